"""Replica heartbeats and the make-before-break acknowledgement of route changes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from modelplane.domain.models import RouteTarget
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture()
def directory(client: redis.Redis, key_prefix: str) -> ReplicaDirectory:
    return ReplicaDirectory(client, key_prefix)


def test_heartbeats_are_listed_until_they_expire(directory: ReplicaDirectory) -> None:
    assert directory.live() == []
    directory.heartbeat("r1", 3, "10.0.0.1:50051", "node-a", ["fraud:1", "fraud:2"], ttl_s=30)
    directory.heartbeat("r2", 4, "10.0.0.2:50051", "node-b", [], ttl_s=0.2)
    live = directory.live()
    assert [(s.replica_id, s.generation, s.address, s.node) for s in live] == [
        ("r1", 3, "10.0.0.1:50051", "node-a"),
        ("r2", 4, "10.0.0.2:50051", "node-b"),
    ]
    assert live[0].loaded == ("fraud:1", "fraud:2")
    time.sleep(0.4)
    assert [s.replica_id for s in directory.live()] == ["r1"]
    directory.remove("r1")
    assert directory.live() == []


def test_wait_for_generation(directory: ReplicaDirectory) -> None:
    # Nobody live: nothing to wait for.
    assert directory.wait_for_generation(10, timeout_s=0)
    directory.heartbeat("r1", 5, "a", "n", [], ttl_s=30)
    assert directory.wait_for_generation(5, timeout_s=0)
    started = time.monotonic()
    assert not directory.wait_for_generation(6, timeout_s=0.2)
    assert time.monotonic() - started >= 0.2

    def report_later() -> None:
        time.sleep(0.1)
        directory.heartbeat("r1", 6, "a", "n", [], ttl_s=30)

    thread = threading.Thread(target=report_later)
    thread.start()
    try:
        assert directory.wait_for_generation(6, timeout_s=5)
    finally:
        thread.join()


def _registry(
    redis_url: str, key_prefix: str, tmp_path: Path, directory: ReplicaDirectory
) -> Registry:
    registry = Registry(
        RedisRegistryStore.from_url(redis_url, key_prefix),
        ArtifactStore(tmp_path / "artifacts"),
        replicas=directory,
        route_ack_timeout_s=5.0,
    )
    registry.register_version("fraud", "", True, iter([linear_model()]))
    return registry


def test_set_route_returns_once_replicas_report_the_change(
    redis_url: str, key_prefix: str, tmp_path: Path, directory: ReplicaDirectory
) -> None:
    registry = _registry(redis_url, key_prefix, tmp_path, directory)
    store = registry.store
    directory.heartbeat("r1", store.current_generation(), "a", "n", ["fraud:1"], ttl_s=30)
    stop = threading.Event()
    reported: list[float] = []

    def replica() -> None:
        # Plays a replica: notices the new generation, "loads", then reports.
        seen = store.current_generation()
        while not stop.is_set():
            generation = store.current_generation()
            if generation > seen:
                time.sleep(0.2)
                reported.append(time.monotonic())
                directory.heartbeat("r1", generation, "a", "n", ["fraud:1"], ttl_s=30)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=replica)
    thread.start()
    try:
        route = registry.set_route("score", [RouteTarget("fraud", 1, version=1)], 0)
        returned = time.monotonic()
    finally:
        stop.set()
        thread.join()
    assert route.revision == 1
    assert reported and returned >= reported[0]
    assert directory.live()[0].generation == store.current_generation()


def test_set_route_logs_replicas_that_never_report(
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
    directory: ReplicaDirectory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = _registry(redis_url, key_prefix, tmp_path, directory)
    registry.route_ack_timeout_s = 0.2
    directory.heartbeat("stuck", 0, "a", "n", [], ttl_s=30)
    with caplog.at_level(logging.WARNING, logger="modelplane.registry.use_cases"):
        route = registry.set_route("score", [RouteTarget("fraud", 1, version=1)], 0)
    assert route.revision == 1
    assert registry.get_route("score") == route
    assert any(
        "replicas stuck did not report generation" in record.getMessage()
        for record in caplog.records
    )
