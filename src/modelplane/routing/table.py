"""The in-memory routing table a replica answers predictions from.

Built once per snapshot (off the predict path) so that each prediction costs a
dict lookup and, for split endpoints, one ``random.random()`` and a bisect over
precomputed cumulative weights. Immutable: a replica swaps whole tables, so a
request that grabbed a table keeps a consistent view of it.
"""

from __future__ import annotations

import bisect
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass

from modelplane.domain.errors import FailedPrecondition, NotFound
from modelplane.domain.models import ModelVersion, RouteTarget, ServingSnapshot, VersionKey

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointRoute:
    """One endpoint's resolved targets; ``problem`` says why none is servable."""

    endpoint: str
    keys: tuple[VersionKey, ...]
    # Running sums of the weights; the last one is the total.
    cumulative: tuple[int, ...]
    revision: int
    problem: str | None = None


def _resolve_target(
    target: RouteTarget,
    versions: dict[VersionKey, ModelVersion],
    aliases: dict[tuple[str, str], int],
) -> VersionKey:
    if target.alias is not None:
        number = aliases.get((target.model, target.alias))
        if number is None:
            raise NotFound(f"alias '{target.alias}' of model '{target.model}' not found")
    elif target.version is not None:
        number = target.version
    else:
        raise NotFound(f"target of model '{target.model}' names neither a version nor an alias")
    key = VersionKey(target.model, number)
    if key not in versions:
        raise NotFound(f"version {number} of model '{target.model}' not found")
    return key


def _resolve_route(
    endpoint: str,
    targets: Iterable[RouteTarget],
    revision: int,
    versions: dict[VersionKey, ModelVersion],
    aliases: dict[tuple[str, str], int],
) -> EndpointRoute:
    keys: list[VersionKey] = []
    cumulative: list[int] = []
    problems: list[str] = []
    total = 0
    for target in targets:
        if target.weight <= 0:
            continue  # a zero-weight target takes no traffic and needs no session
        try:
            key = _resolve_target(target, versions, aliases)
        except NotFound as error:
            # One dangling target must not take the whole endpoint down: the
            # others keep their traffic, renormalised over what is left.
            problems.append(error.message)
            continue
        total += target.weight
        keys.append(key)
        cumulative.append(total)
    if problems:
        _log.warning("endpoint '%s': dropped targets: %s", endpoint, "; ".join(problems))
    problem = None
    if not keys:
        problem = "; ".join(problems) if problems else "no target has a positive weight"
    return EndpointRoute(endpoint, tuple(keys), tuple(cumulative), revision, problem)


class RouteTable:
    """Endpoints -> weighted version keys, plus what is known of every version."""

    __slots__ = ("_aliases", "_endpoints", "_latest", "_versions", "generation")

    def __init__(
        self,
        endpoints: dict[str, EndpointRoute],
        versions: dict[VersionKey, ModelVersion],
        aliases: dict[tuple[str, str], int],
        generation: int,
    ) -> None:
        self._endpoints = endpoints
        self._versions = versions
        self._aliases = aliases
        self.generation = generation
        latest: dict[str, int] = {}
        for key in versions:
            if key.version > latest.get(key.model, 0):
                latest[key.model] = key.version
        self._latest = latest

    @classmethod
    def empty(cls) -> RouteTable:
        return cls({}, {}, {}, generation=0)

    @classmethod
    def from_snapshot(cls, snapshot: ServingSnapshot) -> RouteTable:
        endpoints = {
            name: _resolve_route(
                name, route.targets, route.revision, snapshot.versions, snapshot.aliases
            )
            for name, route in snapshot.routes.items()
        }
        return cls(endpoints, dict(snapshot.versions), dict(snapshot.aliases), snapshot.generation)

    # ------------------------------------------------------------ predict path

    def pick(self, endpoint: str) -> VersionKey:
        """A version for one request to ``endpoint``, drawn by the route's weights."""
        route = self._endpoints.get(endpoint)
        if route is None:
            raise NotFound(f"endpoint '{endpoint}' not found")
        keys = route.keys
        if len(keys) == 1:
            return keys[0]
        if not keys:
            raise FailedPrecondition(
                f"endpoint '{endpoint}' has no servable target: {route.problem}"
            )
        cumulative = route.cumulative
        return keys[bisect.bisect_right(cumulative, random.random() * cumulative[-1])]

    def resolve_model(self, model: str, version: int | None, alias: str | None) -> VersionKey:
        """The version a request naming a model directly means; neither = the latest."""
        if alias is not None:
            number = self._aliases.get((model, alias))
            if number is None:
                if model not in self._latest:
                    raise NotFound(f"model '{model}' not found")
                raise NotFound(f"alias '{alias}' of model '{model}' not found")
        elif version is not None:
            number = version
        else:
            latest = self._latest.get(model)
            if latest is None:
                raise NotFound(f"model '{model}' not found")
            number = latest
        key = VersionKey(model, number)
        if key not in self._versions:
            if model not in self._latest:
                raise NotFound(f"model '{model}' not found")
            raise NotFound(f"version {number} of model '{model}' not found")
        return key

    def has_version(self, key: VersionKey) -> bool:
        return key in self._versions

    def version_info(self, key: VersionKey) -> ModelVersion:
        info = self._versions.get(key)
        if info is None:
            raise NotFound(f"version {key.version} of model '{key.model}' not found")
        return info

    # ------------------------------------------------------------- swap logic

    def endpoints(self) -> dict[str, EndpointRoute]:
        return dict(self._endpoints)

    def endpoint(self, name: str) -> EndpointRoute | None:
        return self._endpoints.get(name)

    def versions_needed(self) -> set[VersionKey]:
        """Every version some endpoint can send traffic to."""
        return {key for route in self._endpoints.values() for key in route.keys}

    def keeping(self, previous: RouteTable, endpoints: Iterable[str]) -> RouteTable:
        """This table, except that ``endpoints`` keep their routes from ``previous``.

        Used when the versions a new route needs could not be loaded: those
        endpoints go on serving what they served before. An endpoint ``previous``
        did not have keeps its new route (its requests then report the load error).
        """
        merged = dict(self._endpoints)
        versions = dict(self._versions)
        for name in endpoints:
            old = previous._endpoints.get(name)
            if old is None:
                continue
            merged[name] = old
            for key in old.keys:
                # The old route may point at a version the registry no longer
                # lists; keep its record so the route can still be served.
                if key not in versions:
                    versions[key] = previous._versions[key]
        return RouteTable(merged, versions, dict(self._aliases), self.generation)
