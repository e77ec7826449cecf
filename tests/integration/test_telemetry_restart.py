"""What survives a control-plane restart, against a real Redis: the aggregation
windows (flushed slots) and running rollouts (resumed with their step clock)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from modelplane.control.rollouts import RolloutManager
from modelplane.domain.errors import FailedPrecondition, InvalidArgument
from modelplane.domain.models import RouteTarget
from modelplane.domain.rollouts import RolloutGates
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model
from modelplane.telemetry.aggregator import SLOT_SECONDS, StatsAggregator
from modelplane.telemetry.histogram import BOUNDS_S, bucket_index
from modelplane.telemetry.persistence import AggregatePersistence

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _counts(value_s: float, n: int) -> list[int]:
    counts = [0] * (len(BOUNDS_S) + 1)
    counts[bucket_index(value_s)] = n
    return counts


def _add(agg: StatsAggregator, version: int, value_s: float, n: int, t: float,
         status: str = "OK") -> None:
    agg.add_histogram_point("fraud", "m", version, status, _counts(value_s, n), BOUNDS_S,
                            value_s * n, n, t)


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def test_restarted_aggregator_loses_at_most_the_unflushed_slot(
    client: redis.Redis, key_prefix: str
) -> None:
    clock = Clock(T0)
    before = StatsAggregator(clock=clock)
    persistence = AggregatePersistence(client, key_prefix, before, clock=clock)
    # 50 minutes of traffic, 10 requests per 10 s slot, then some in the current slot.
    for i in range(300):
        _add(before, 1, 0.002, 10, T0 - 3000 + i * SLOT_SECONDS)
    _add(before, 1, 0.5, 3, T0 - 15, status="INTERNAL")
    before.add_exemplar("fraud", "m", 1, "ab" * 16, 0.5, T0 - 15)
    _add(before, 1, 0.002, 7, T0)  # the current slot: not flushed yet
    written = persistence.flush()
    assert written == 300  # the closed slots; the open one waits for the next flush

    # A new control plane, an instant later.
    after = StatsAggregator(clock=clock)
    restored = AggregatePersistence(client, key_prefix, after, clock=clock).restore()
    assert restored == written
    for window in (60, 300, 3600):
        [old] = before.query("fraud", window)
        [new] = after.query("fraud", window)
        assert new.window_request_count == old.window_request_count - 7
        assert new.window_error_count == old.window_error_count == 3
        assert new.p99_ms == pytest.approx(old.p99_ms, rel=0.2)
        assert new.exemplar_trace_ids == ("ab" * 16,)
    [new] = after.query("fraud", 3600)
    assert new.request_count == 300 * 10 + 3 + 7  # totals as of the flush
    # Exports after the restart add on top of what was restored.
    restored_minute = after.query("fraud", 60)[0].window_request_count
    _add(after, 1, 0.002, 5, T0)
    assert after.query("fraud", 60)[0].window_request_count == restored_minute + 5


def test_restore_ignores_slots_older_than_the_horizon(client: redis.Redis, key_prefix: str) -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    _add(agg, 1, 0.002, 10, T0 - 100)
    AggregatePersistence(client, key_prefix, agg, clock=clock).flush()
    clock.now = T0 + 4000
    fresh = StatsAggregator(clock=clock)
    assert AggregatePersistence(client, key_prefix, fresh, clock=clock).restore() == 0
    assert fresh.query("fraud", 3600)[0].window_request_count == 0


@pytest.fixture()
def registry(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Registry]:
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    registry = Registry(store, ArtifactStore(tmp_path / "artifacts"))
    registry.register_version("m", "v1", create_model=True, chunks=[linear_model(seed=1)])
    registry.register_version("m", "v2", create_model=False, chunks=[linear_model(seed=2)])
    registry.set_route("fraud", [RouteTarget("m", 100, version=1)], expected_revision=0)
    yield registry
    store._redis.close()


GATES = RolloutGates(max_p99_ratio=1.2, max_error_rate=0.01, min_requests=20)


def test_a_running_rollout_resumes_after_a_restart(
    registry: Registry, client: redis.Redis, key_prefix: str
) -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    first = RolloutManager(registry, agg, client, key_prefix, clock=clock)
    started = first.start("fraud", "", 2, [20, 100], 30.0, GATES)
    assert (started.canary_weight, started.stable_version) == (20, 1)
    with pytest.raises(FailedPrecondition, match="already has a running rollout"):
        first.start("fraud", "m", 2, [20, 100], 30.0, GATES)
    del first  # the control plane goes away mid-step

    clock.now = T0 + 40
    # Both versions served the step equally well.
    _add(agg, 1, 0.002, 200, T0 + 20)
    _add(agg, 2, 0.002, 50, T0 + 20)
    second = RolloutManager(registry, agg, client, key_prefix, clock=clock)
    assert second.running() == ["fraud"]
    resumed = second.get("fraud")
    assert resumed.step_started_ms == started.step_started_ms
    second.tick()
    done = second.get("fraud")
    assert done.state == "promoted", done.reason
    assert [(t.version, t.weight) for t in registry.get_route("fraud").targets] == [(2, 100)]
    assert second.running() == []


def test_a_failing_gate_rolls_back_and_a_foreign_route_change_stops_the_rollout(
    registry: Registry, client: redis.Redis, key_prefix: str
) -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    manager = RolloutManager(registry, agg, client, key_prefix, clock=clock)
    manager.start("fraud", "m", 2, [20, 50, 100], 30.0, GATES)
    clock.now = T0 + 5
    _add(agg, 1, 0.002, 200, T0 + 2)
    _add(agg, 2, 0.002, 40, T0 + 2)
    _add(agg, 2, 0.2, 10, T0 + 2, status="INTERNAL")
    manager.tick()  # mid-step: the error gate fails at once
    rolled = manager.get("fraud")
    assert rolled.state == "rolled_back"
    assert rolled.reason == "rolled back at 20%: canary error rate 20.00% > 1.00%"
    assert [(t.version, t.weight) for t in registry.get_route("fraud").targets] == [(1, 100)]

    # Someone edits the route by hand during the next rollout: it stops, hands off.
    clock.now = T0 + 100
    manager.start("fraud", "m", 2, [20, 100], 1.0, GATES)
    route = registry.get_route("fraud")
    registry.set_route("fraud", [RouteTarget("m", 100, version=1)], route.revision)
    with pytest.raises(InvalidArgument, match="steps: expected the last weight to be 100"):
        manager.start("other", "m", 2, [20, 50], 1.0, GATES)
    clock.now = T0 + 120
    _add(agg, 1, 0.002, 100, T0 + 119)
    _add(agg, 2, 0.002, 100, T0 + 119)
    manager.tick()
    stopped = manager.get("fraud")
    assert stopped.state == "aborted"
    assert "changed outside the rollout" in stopped.reason
    assert [(t.version, t.weight) for t in registry.get_route("fraud").targets] == [(1, 100)]


def test_promote_and_abort_by_hand(
    registry: Registry, client: redis.Redis, key_prefix: str
) -> None:
    clock = Clock(T0)
    manager = RolloutManager(registry, StatsAggregator(clock=clock), client, key_prefix,
                             clock=clock)
    manager.start("fraud", "m", 2, [5, 25, 100], 60.0, GATES)
    aborted = manager.abort("fraud")
    assert (aborted.state, aborted.canary_weight) == ("aborted", 0)
    assert [(t.version, t.weight) for t in registry.get_route("fraud").targets] == [(1, 100)]
    with pytest.raises(FailedPrecondition, match="is aborted, not running"):
        manager.promote("fraud")
    manager.start("fraud", "m", 2, [5, 25, 100], 60.0, GATES)
    promoted = manager.promote("fraud")
    assert (promoted.state, promoted.canary_weight) == ("promoted", 100)
    assert [(t.version, t.weight) for t in registry.get_route("fraud").targets] == [(2, 100)]
    assert [e.action for e in promoted.history] == ["started", "promoted"]


def test_the_accuracy_gate_rolls_back_a_less_accurate_canary(
    registry: Registry, client: redis.Redis, key_prefix: str
) -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    accuracy = {1: 0.90, 2: 0.80}
    manager = RolloutManager(
        registry, agg, client, key_prefix, clock=clock,
        accuracy=lambda endpoint, model, version, start, end: accuracy.get(version),
    )
    gates = RolloutGates(max_p99_ratio=2.0, max_error_rate=0.05, min_accuracy_delta=-0.05,
                         min_requests=20)
    manager.start("fraud", "m", 2, [10, 100], 1.0, gates)
    clock.now = T0 + 5
    _add(agg, 1, 0.002, 200, T0 + 2)
    _add(agg, 2, 0.002, 30, T0 + 2)
    manager.tick()
    rolled = manager.get("fraud")
    assert rolled.state == "rolled_back"
    assert rolled.reason == (
        "rolled back at 10%: canary accuracy 0.800 - stable 0.900 = -0.100 < -0.050"
    )


def _canary_at_20_percent(
    registry: Registry, client: redis.Redis, key_prefix: str
) -> tuple[Clock, StatsAggregator, RolloutManager]:
    """A rollout of version 2 at its first step (20 %), 5 s into a 30 s step."""
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    manager = RolloutManager(registry, agg, client, key_prefix, clock=clock)
    manager.start("fraud", "m", 2, [20, 100], 30.0, GATES)
    clock.now = T0 + 5
    return clock, agg, manager


def test_one_slow_request_among_few_does_not_roll_a_healthy_canary_back(
    registry: Registry, client: redis.Redis, key_prefix: str
) -> None:
    clock, agg, manager = _canary_at_20_percent(registry, client, key_prefix)
    _add(agg, 1, 0.002, 200, T0 + 2)
    # The canary is as fast, but one of its 30 requests met a scheduling hiccup:
    # its p99 over 30 requests is that one request, 100x the stable version's.
    _add(agg, 2, 0.002, 29, T0 + 2)
    _add(agg, 2, 0.2, 1, T0 + 2)
    manager.tick()
    assert manager.get("fraud").state == "running"
    clock.now = T0 + 40
    manager.tick()
    promoted = manager.get("fraud")
    assert promoted.state == "promoted", promoted.reason


def test_a_canary_slow_on_every_request_is_rolled_back_on_its_p90(
    registry: Registry, client: redis.Redis, key_prefix: str
) -> None:
    _, agg, manager = _canary_at_20_percent(registry, client, key_prefix)
    _add(agg, 1, 0.002, 200, T0 + 2)
    _add(agg, 2, 0.05, 25, T0 + 2)
    manager.tick()  # mid-step, on the canary's first 25 requests
    rolled = manager.get("fraud")
    assert rolled.state == "rolled_back"
    assert rolled.reason.startswith("rolled back at 20%: canary p90 ")
    assert rolled.reason.endswith(
        "(p90: 25 requests in the window, a p99 needs 200)"
    ), rolled.reason


def test_with_enough_requests_the_gate_compares_p99s(
    registry: Registry, client: redis.Redis, key_prefix: str
) -> None:
    _, agg, manager = _canary_at_20_percent(registry, client, key_prefix)
    _add(agg, 1, 0.002, 1000, T0 + 2)
    # 3 % of the canary's requests are slow: its p90 is fine, its p99 is not.
    _add(agg, 2, 0.002, 291, T0 + 2)
    _add(agg, 2, 0.2, 9, T0 + 2)
    manager.tick()
    rolled = manager.get("fraud")
    assert rolled.state == "rolled_back"
    assert rolled.reason.startswith("rolled back at 20%: canary p99 "), rolled.reason
    assert "stable p99" in rolled.reason and "requests in the window" not in rolled.reason


def test_malformed_slots_are_skipped_with_a_warning(
    client: redis.Redis, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    for i in range(3):
        _add(agg, 1, 0.002, 10, T0 - 100 + i * SLOT_SECONDS)
    AggregatePersistence(client, key_prefix, agg, clock=clock).flush()
    slots = f'{key_prefix}:tel:slots:["fraud", "m", 1]'
    epoch = str(int((T0 - 100) // SLOT_SECONDS))
    client.hset(slots, epoch, (client.hget(slots, epoch) or b"")[:20])  # cut short
    client.hset(f"{key_prefix}:tel:totals", '["fraud", "m", 2]', "[1,")
    client.sadd(f"{key_prefix}:tel:series", '["fraud", "m"')
    caplog.set_level(logging.WARNING, logger="modelplane.telemetry.persistence")
    fresh = StatsAggregator(clock=clock)
    assert AggregatePersistence(client, key_prefix, fresh, clock=clock).restore() == 2
    assert fresh.query("fraud", 3600)[0].window_request_count == 20
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert f"slot {epoch} of" in warnings and "malformed" in warnings
    assert "totals of '[\"fraud\", \"m\", 2]'" in warnings
    assert "series '[\"fraud\", \"m\"'" in warnings
