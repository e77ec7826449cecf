"""The in-memory routing table a replica answers predictions from.

Built once per snapshot (off the predict path) so that each prediction costs a
dict lookup and, for split endpoints, one ``random.random()`` and a bisect over
precomputed cumulative weights, or, for a request carrying a sticky key, one
hash per target (routing/hashing.py). Immutable: a replica swaps whole tables,
so a request that grabbed a table keeps a consistent view of it.

Beside its weighted targets an endpoint may have shadows (versions that see a
percentage of the traffic, answers compared, never returned) and a fallback
(the version that answers when the picked one fails).
"""

from __future__ import annotations

import bisect
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass

from modelplane.domain.errors import FailedPrecondition, NotFound
from modelplane.domain.models import (
    ModelVersion,
    Route,
    RouteReason,
    RouteTarget,
    ServingSnapshot,
    ShadowTarget,
    VersionKey,
    VersionStatus,
)
from modelplane.routing.hashing import rendezvous_pick, salt_of

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Batching:
    """Dynamic batching limits of one version; max_batch_size 0 = the replica's default."""

    max_batch_size: int = 0
    max_wait_us: int = 0


@dataclass(frozen=True, slots=True)
class ShadowRoute:
    key: VersionKey
    # 0..100: the share of the endpoint's requests mirrored to ``key``.
    percent: float


@dataclass(frozen=True, slots=True)
class EndpointRoute:
    """One endpoint's resolved targets; ``problem`` says why none is servable."""

    endpoint: str
    keys: tuple[VersionKey, ...]
    # Running sums of the weights; the last one is the total.
    cumulative: tuple[int, ...]
    revision: int
    problem: str | None = None
    shadows: tuple[ShadowRoute, ...] = ()
    fallback: VersionKey | None = None
    # The input whose value is the sticky key when the request carries none.
    sticky_input: str = ""
    weights: tuple[int, ...] = ()
    salts: tuple[bytes, ...] = ()

    def pick(self, sticky_key: bytes | None = None) -> tuple[VersionKey, RouteReason]:
        """A version for one request: by the sticky key's hash if given, else drawn by weight."""
        keys = self.keys
        if len(keys) == 1:
            return keys[0], RouteReason.STICKY if sticky_key is not None else RouteReason.WEIGHT
        if not keys:
            raise FailedPrecondition(
                f"endpoint '{self.endpoint}' has no servable target: {self.problem}"
            )
        if sticky_key is not None:
            index = rendezvous_pick(sticky_key, keys, self.weights, self.salts)
            return keys[index], RouteReason.STICKY
        cumulative = self.cumulative
        index = bisect.bisect_right(cumulative, random.random() * cumulative[-1])
        return keys[index], RouteReason.WEIGHT

    def versions(self) -> set[VersionKey]:
        """Every version this endpoint can send a request (or a mirrored copy) to."""
        found = set(self.keys)
        found.update(shadow.key for shadow in self.shadows)
        if self.fallback is not None:
            found.add(self.fallback)
        return found


def _resolve_target(
    target: RouteTarget | ShadowTarget,
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
    route: Route | None = None,
) -> EndpointRoute:
    keys: list[VersionKey] = []
    cumulative: list[int] = []
    weights: list[int] = []
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
        if key in keys:
            # The same version twice (say pinned and through an alias): one
            # entry with the summed weight keeps sticky hashing consistent.
            index = keys.index(key)
            weights[index] += target.weight
            total += target.weight
            cumulative[index:] = [c + target.weight for c in cumulative[index:]]
            continue
        total += target.weight
        keys.append(key)
        weights.append(target.weight)
        cumulative.append(total)
    shadows: list[ShadowRoute] = []
    fallback: VersionKey | None = None
    sticky_input = ""
    if route is not None:
        sticky_input = route.sticky_input
        for shadow in route.shadows:
            try:
                shadow_key = _resolve_target(shadow, versions, aliases)
                shadows.append(ShadowRoute(shadow_key, shadow.percent))
            except NotFound as error:
                # A shadow only observes: losing it must not touch serving.
                _log.warning("endpoint '%s': dropped shadow: %s", endpoint, error.message)
        if route.fallback is not None:
            try:
                fallback = _resolve_target(route.fallback, versions, aliases)
            except NotFound as error:
                _log.warning("endpoint '%s': dropped fallback: %s", endpoint, error.message)
    if problems:
        _log.warning("endpoint '%s': dropped targets: %s", endpoint, "; ".join(problems))
    problem = None
    if not keys:
        problem = "; ".join(problems) if problems else "no target has a positive weight"
    return EndpointRoute(
        endpoint,
        tuple(keys),
        tuple(cumulative),
        revision,
        problem,
        shadows=tuple(shadows),
        fallback=fallback,
        sticky_input=sticky_input,
        weights=tuple(weights),
        salts=tuple(salt_of(key) for key in keys),
    )


def _batching(snapshot: ServingSnapshot) -> dict[VersionKey, Batching]:
    """Per version, the largest limits any route target naming it asks for."""
    found: dict[VersionKey, Batching] = {}
    for route in snapshot.routes.values():
        for target in (*route.targets, *((route.fallback,) if route.fallback else ())):
            if not (target.max_batch_size or target.max_wait_us):
                continue
            try:
                key = _resolve_target(target, snapshot.versions, snapshot.aliases)
            except NotFound:
                continue
            old = found.get(key, Batching())
            found[key] = Batching(
                max(old.max_batch_size, target.max_batch_size),
                max(old.max_wait_us, target.max_wait_us),
            )
    return found


class RouteTable:
    """Endpoints -> weighted version keys, plus what is known of every version."""

    __slots__ = (
        "_aliases", "_endpoints", "_latest", "_models", "_versions", "batching", "generation"
    )

    def __init__(
        self,
        endpoints: dict[str, EndpointRoute],
        versions: dict[VersionKey, ModelVersion],
        aliases: dict[tuple[str, str], int],
        generation: int,
        batching: dict[VersionKey, Batching] | None = None,
    ) -> None:
        self.batching: dict[VersionKey, Batching] = batching or {}
        """Batching limits the routes set per version; absent = the replica's default."""
        self._endpoints = endpoints
        self._versions = versions
        self._aliases = aliases
        self.generation = generation
        # "The latest version" a request may mean is the newest one that can serve.
        latest: dict[str, int] = {}
        for key, info in versions.items():
            if info.status is VersionStatus.READY and key.version > latest.get(key.model, 0):
                latest[key.model] = key.version
        self._latest = latest
        self._models = {key.model for key in versions}

    @classmethod
    def empty(cls) -> RouteTable:
        return cls({}, {}, {}, generation=0)

    @classmethod
    def from_snapshot(cls, snapshot: ServingSnapshot) -> RouteTable:
        endpoints = {
            name: _resolve_route(
                name, route.targets, route.revision, snapshot.versions, snapshot.aliases, route
            )
            for name, route in snapshot.routes.items()
        }
        return cls(
            endpoints,
            dict(snapshot.versions),
            dict(snapshot.aliases),
            snapshot.generation,
            _batching(snapshot),
        )

    # ------------------------------------------------------------ predict path

    def route(self, endpoint: str) -> EndpointRoute:
        route = self._endpoints.get(endpoint)
        if route is None:
            raise NotFound(f"endpoint '{endpoint}' not found")
        return route

    def pick(self, endpoint: str, sticky_key: bytes | None = None) -> VersionKey:
        """A version for one request to ``endpoint``, drawn by the route's weights."""
        return self.route(endpoint).pick(sticky_key)[0]

    def resolve_model(self, model: str, version: int | None, alias: str | None) -> VersionKey:
        """The version a request naming a model directly means; neither = the latest."""
        if alias is not None:
            number = self._aliases.get((model, alias))
            if number is None:
                if model not in self._models:
                    raise NotFound(f"model '{model}' not found")
                raise NotFound(f"alias '{alias}' of model '{model}' not found")
        elif version is not None:
            number = version
        else:
            latest = self._latest.get(model)
            if latest is None:
                if model not in self._models:
                    raise NotFound(f"model '{model}' not found")
                raise FailedPrecondition(f"model '{model}' has no READY version")
            number = latest
        key = VersionKey(model, number)
        if key not in self._versions:
            if model not in self._models:
                raise NotFound(f"model '{model}' not found")
            raise NotFound(f"version {number} of model '{model}' not found")
        status = self._versions[key].status
        if status is not VersionStatus.READY:
            # Only validated versions serve; PENDING, FAILED and ARCHIVED ones never do.
            raise FailedPrecondition(
                f"version {number} of model '{model}' is {status.value}, not READY"
            )
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
        return {key for route in self._endpoints.values() for key in route.versions()}

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
            for key in old.versions():
                # The old route may point at a version the registry no longer
                # lists; keep its record so the route can still be served.
                if key not in versions:
                    versions[key] = previous._versions[key]
        return RouteTable(
            merged, versions, dict(self._aliases), self.generation, dict(self.batching)
        )
