"""Checks a route's shadows, fallback and sticky input; lists the versions it needs.

A shadow or a fallback receives the very requests sent to the primary targets,
so its signature must accept them: every input a shadow needs must be one the
primaries take, with the same dtype and a compatible shape; and a shadow must
produce the primaries' outputs, or there is nothing to compare. An
incompatible one is FAILED_PRECONDITION: the request is well formed, the
registry's versions do not fit together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelplane.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from modelplane.domain.models import (
    ModelVersion,
    RouteTarget,
    ShadowTarget,
    TensorSpec,
    VersionKey,
    VersionStatus,
)
from modelplane.registry.names import validate_alias, validate_name, validate_version_number
from modelplane.registry.store import RegistryStore


@dataclass(frozen=True)
class RoutePlan:
    shadows: tuple[ShadowTarget, ...]
    # Every version the route can send a request or a mirrored copy to.
    versions: frozenset[VersionKey]


def _check_ref(field: str, model: str, version: int | None, alias: str | None) -> None:
    validate_name(f"{field}.model", model)
    if (version is None) == (alias is None):
        raise InvalidArgument(
            f"{field}: expected exactly one of version or alias, got "
            + ("both" if version is not None else "neither")
        )
    if version is not None:
        validate_version_number(f"{field}.version", version)
    if alias is not None:
        validate_alias(f"{field}.alias", alias)


def _resolve(
    store: RegistryStore, field: str, model: str, version: int | None, alias: str | None
) -> ModelVersion:
    try:
        number = version if version is not None else store.get_alias(model, str(alias)).version
        found = store.get_version(model, number)
    except NotFound as error:
        ref = "version" if version is not None else "alias"
        raise InvalidArgument(f"{field}.{ref}: {error.message}") from None
    if not found.servable:
        # Checked before replicas are asked to load anything; the store's script
        # re-checks atomically with the write.
        raise FailedPrecondition(f"{field}: {unservable(found)}")
    return found


def unservable(version: ModelVersion) -> str:
    """Why a version that is not READY cannot be routed to, for error messages."""
    name = f"version {version.version} of model '{version.model}'"
    if version.status is VersionStatus.ARCHIVED:
        purged = " and its artifact was purged" if version.artifact_purged_at_ms else ""
        return (
            f"{name} is ARCHIVED (retired){purged}; retired versions are never routed "
            "to again; register the model again for a new version"
        )
    return f"{name} is {version.status.value}, not READY; only READY versions can be routed to"


def _shape(spec: TensorSpec) -> str:
    return f"{spec.dtype.value} {list(spec.shape)}"


def _fits(given: TensorSpec, wanted: TensorSpec) -> bool:
    if given.dtype != wanted.dtype or len(given.shape) != len(wanted.shape):
        return False
    return all(a < 0 or b < 0 or a == b for a, b in zip(given.shape, wanted.shape, strict=True))


def _incompatibility(
    primary: ModelVersion, other: ModelVersion, compare_outputs: bool
) -> str | None:
    """Why ``other`` cannot take ``primary``'s requests (or answer alike); None if it can."""
    offered = {spec.name: spec for spec in primary.signature.inputs}
    for wanted in other.signature.inputs:
        given = offered.get(wanted.name)
        if given is None:
            return f"it needs input '{wanted.name}', which the primary's callers do not send"
        if not _fits(given, wanted):
            return (
                f"input '{wanted.name}' is {_shape(given)} for the primary, "
                f"{_shape(wanted)} for it"
            )
    if compare_outputs:
        produced = {spec.name: spec for spec in other.signature.outputs}
        for expected in primary.signature.outputs:
            got = produced.get(expected.name)
            if got is None:
                return f"it has no output '{expected.name}' to compare with the primary's"
            if not _fits(expected, got):
                return (
                    f"output '{expected.name}' is {_shape(expected)} for the primary, "
                    f"{_shape(got)} for it"
                )
    return None


def plan_route(
    store: RegistryStore,
    targets: tuple[RouteTarget, ...],
    shadows: tuple[ShadowTarget, ...],
    fallback: RouteTarget | None,
    sticky_input: str,
) -> RoutePlan:
    """Validates what ``Registry._validate_targets`` does not; targets are already checked."""
    primaries: list[tuple[int, ModelVersion]] = []
    for i, target in enumerate(targets):
        version = _resolve(store, f"targets[{i}]", target.model, target.version, target.alias)
        if target.weight > 0:
            primaries.append((i, version))
    versions = {VersionKey(v.model, v.version) for _, v in primaries}

    for i, shadow in enumerate(shadows):
        field = f"shadows[{i}]"
        _check_ref(field, shadow.model, shadow.version, shadow.alias)
        if not (math.isfinite(shadow.percent) and 0 < shadow.percent <= 100):
            raise InvalidArgument(
                f"{field}.percent: expected a percentage in (0, 100], got {shadow.percent}"
            )
        version = _resolve(store, field, shadow.model, shadow.version, shadow.alias)
        _require_compatible(field, primaries, version, compare_outputs=True)
        versions.add(VersionKey(version.model, version.version))

    if fallback is not None:
        _check_ref("fallback", fallback.model, fallback.version, fallback.alias)
        version = _resolve(store, "fallback", fallback.model, fallback.version, fallback.alias)
        _require_compatible("fallback", primaries, version, compare_outputs=False)
        versions.add(VersionKey(version.model, version.version))

    if sticky_input:
        for i, primary in primaries:
            if primary.signature.input(sticky_input) is None:
                raise InvalidArgument(
                    f"sticky_input: version {primary.version} of model '{primary.model}' "
                    f"(targets[{i}]) has no input '{sticky_input}'"
                )
    return RoutePlan(shadows=shadows, versions=frozenset(versions))


def _require_compatible(
    field: str,
    primaries: list[tuple[int, ModelVersion]],
    version: ModelVersion,
    *,
    compare_outputs: bool,
) -> None:
    for i, primary in primaries:
        problem = _incompatibility(primary, version, compare_outputs)
        if problem is not None:
            raise FailedPrecondition(
                f"{field}: version {version.version} of model '{version.model}' cannot serve "
                f"the requests of targets[{i}] (version {primary.version} of model "
                f"'{primary.model}'): {problem}"
            )
