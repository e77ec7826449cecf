"""Automation that moves weights (rollouts, promotions) keeps the rest of the route."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelplane.domain.errors import Aborted, FailedPrecondition
from modelplane.domain.models import RouteTarget, ShadowTarget
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model


@pytest.fixture()
def registry(redis_url: str, key_prefix: str, tmp_path: Path) -> Registry:
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    registry = Registry(store, ArtifactStore(tmp_path / "artifacts"))
    for seed in (1, 2, 3):
        registry.register_version("m", f"seed {seed}", True, [linear_model(seed=seed)])
    return registry


def test_reweight_keeps_shadows_fallback_and_sticky_input(registry: Registry) -> None:
    route = registry.set_route(
        "e",
        (RouteTarget("m", 100, version=1),),
        0,
        shadows=(ShadowTarget("m", 10.0, version=3),),
        fallback=RouteTarget("m", 1, version=3),
        sticky_input="x",
    )
    moved = registry.reweight_route(
        "e", (RouteTarget("m", 50, version=1), RouteTarget("m", 50, version=2)), route.revision
    )
    assert [(t.version, t.weight) for t in moved.targets] == [(1, 50), (2, 50)]
    assert moved.shadows == route.shadows
    assert moved.fallback == route.fallback
    assert moved.sticky_input == "x"


def test_reweight_against_a_stale_revision_changes_nothing(registry: Registry) -> None:
    route = registry.set_route("e", (RouteTarget("m", 100, version=1),), 0)
    registry.set_route("e", (RouteTarget("m", 100, version=2),), route.revision)
    with pytest.raises(Aborted):
        registry.reweight_route("e", (RouteTarget("m", 100, version=3),), route.revision)
    assert [t.version for t in registry.get_route("e").targets] == [2]


def test_shadow_and_fallback_versions_cannot_be_deleted_or_archived(registry: Registry) -> None:
    registry.set_route(
        "e",
        (RouteTarget("m", 100, version=1),),
        0,
        shadows=(ShadowTarget("m", 10.0, version=3),),
        fallback=RouteTarget("m", 1, version=2),
    )
    for version in (2, 3):
        with pytest.raises(FailedPrecondition, match=r"endpoint\(s\) 'e'"):
            registry.delete_version("m", version)
        with pytest.raises(FailedPrecondition, match="'e'"):
            registry.archive_version("m", version)
    assert registry.get_version("m", 2).status.value == "READY"
