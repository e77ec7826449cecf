"""The periodic flush thread shared by the telemetry persistences."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from modelplane.telemetry.flush_loop import FlushLoop


class Flushes:
    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.count = 0
        self.failures = list(failures or [])
        self.happened = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.happened.set()
        if self.failures:
            raise self.failures.pop(0)


def test_wake_flushes_before_the_interval_and_stop_flushes_once_more() -> None:
    flushes = Flushes()
    loop = FlushLoop(flushes, "test-flush", "test")
    loop.start(3600.0)
    assert not flushes.happened.wait(0.2)
    loop.wake()
    assert flushes.happened.wait(5.0)
    assert flushes.count == 1
    loop.stop()
    assert flushes.count == 2  # the last write on the way out


def test_a_failing_flush_does_not_stop_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    flushes = Flushes([redis.ConnectionError("down"), ValueError("bad state")])
    loop = FlushLoop(flushes, "test-flush", "drift/feedback")
    loop.start(0.01)
    deadline = time.monotonic() + 5.0
    while flushes.count < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.stop()
    assert flushes.count >= 3
    messages = [record.getMessage() for record in caplog.records]
    assert "drift/feedback flush to Redis failed: down" in messages
    assert "drift/feedback flush failed" in messages


def test_a_final_flush_with_redis_down_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = FlushLoop(Flushes([redis.ConnectionError("gone")]), "test-flush", "telemetry")
    loop.stop()  # never started: only the final write, which fails
    assert "final telemetry flush to Redis failed: gone" in [
        record.getMessage() for record in caplog.records
    ]


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        FlushLoop(Flushes(), "test-flush", "test").start(0)
