"""The alert watcher remembers active alerts in Redis: a restart does not audit them again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from modelplane.control.alert_watch import AlertWatcher
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.drift import BIN_COUNT, DriftTracker

pytestmark = pytest.mark.integration


class _Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def record_event(self, action: str, subject: str, **_: object) -> str:
        self.events.append(action)
        return "1-0"


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def test_a_restarted_watcher_does_not_audit_an_active_alert_again(
    client: redis.Redis, key_prefix: str
) -> None:
    now = [1000.0]
    drift = DriftTracker(baseline_count=100, window_s=10, min_recent=10, clock=lambda: now[0])
    counts = [0] * BIN_COUNT
    counts[2] = 100
    drift.add("e", "m", 1, "x", counts, now[0])
    counts = [0] * BIN_COUNT
    counts[BIN_COUNT - 1] = 50
    drift.add("e", "m", 1, "x", counts, now[0])

    def watcher(recorder: _Recorder) -> AlertWatcher:
        return AlertWatcher(
            recorder, StatsAggregator(), drift=drift, clock=lambda: now[0],  # type: ignore[arg-type]
            redis_client=client, key_prefix=key_prefix,
        )

    first = _Recorder()
    assert [a.kind for a in watcher(first).tick()] == ["drift"]
    assert first.events == ["alert_drift"]
    assert client.smembers(f"{key_prefix}:alerts:active") == {b'["drift", "e", "m", 1]'}

    second = _Recorder()  # the control plane restarted: a new watcher, same Redis
    restarted = watcher(second)
    assert restarted.tick() == [] and second.events == []

    now[0] += 60  # the drift ages out: the alert clears, and its return is new
    assert restarted.tick() == []
    assert client.exists(f"{key_prefix}:alerts:active") == 0
