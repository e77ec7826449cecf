"""A short hot-swap load test: open-loop traffic through swaps and a weighted rollout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.swap_test import Answer, Change, Recorder, disallowed, run_swap_test
from modelplane.config import Settings
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.use_cases import Registry
from modelplane.serving.replica import ReplicaRuntime

pytestmark = pytest.mark.integration


def test_the_disallowed_check_catches_a_version_outside_every_route_state() -> None:
    recorder = Recorder(
        answers=[
            Answer(intended=0.0, received=0.5, version=1),  # before the change: fine
            Answer(intended=1.0, received=1.2, version=2),  # inside the change call: fine
            Answer(intended=3.0, received=3.1, version=1),  # after it returned: stale
            Answer(intended=3.0, received=3.1, version=9),  # never allowed
        ],
        changes=[Change(started=1.1, returned=1.5, allowed=frozenset({2}), label="-> v2")],
    )
    bad = disallowed(recorder, frozenset({1}), start=0.0)
    assert [(a.intended, a.version) for a in bad] == [(3.0, 1), (3.0, 9)]


@pytest.fixture()
def plane(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[tuple[Registry, str]]:
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path, inference_port=0,
    )
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    registry = Registry(
        store, ArtifactStore(settings.resolved_artifact_root),
        replicas=ReplicaDirectory(store._redis, key_prefix),
    )
    runtime = ReplicaRuntime(settings, "swap-replica", reuse_port=False)
    try:
        yield registry, runtime.address
    finally:
        runtime.close()
        store._redis.close()


def test_swaps_and_a_rollout_under_load_drop_nothing(plane: tuple[Registry, str]) -> None:
    from loadtests.swap_test import prepare_versions

    registry, address = plane
    versions = prepare_versions(registry)
    result = run_swap_test(
        registry, address, versions, swaps=4, rollout_steps=3, seconds_between=0.3,
        steady_s=1.0, rate=150.0, say=lambda _: None,
    )
    assert result["requests"] > 500
    assert result["failed"] == 0, result["failed_by_status"]
    assert result["disallowed"] == 0, result["disallowed_examples"]
    assert len(result["changes"]) == 4 + 3 + 0  # four swaps end on v1: no reset needed
