"""SnapshotWatcher on a real Redis: first sync, coalescing, resync after reconnect."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from modelplane.domain.models import ServingSnapshot
from modelplane.routing.watcher import SnapshotWatcher

pytestmark = pytest.mark.integration


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


class Source:
    """Hands out snapshots with a rising generation; can be told to fail or be slow."""

    def __init__(self) -> None:
        self.generation = 0
        self.failures_left = 0
        self.delay_s = 0.0
        self.lock = threading.Lock()

    def load(self) -> ServingSnapshot:
        with self.lock:
            if self.failures_left:
                self.failures_left -= 1
                raise ConnectionError("registry unreachable")
            self.generation += 1
            generation = self.generation
        time.sleep(self.delay_s)
        return ServingSnapshot(routes={}, versions={}, aliases={}, generation=generation)


def _wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_start_syncs_before_returning_and_messages_resync(
    client: redis.Redis, key_prefix: str
) -> None:
    source, seen = Source(), []
    watcher = SnapshotWatcher(source.load, client, f"{key_prefix}:changes", seen.append)
    watcher.start()
    try:
        assert [s.generation for s in seen] == [1]
        client.publish(f"{key_prefix}:changes", "x")
        _wait_for(lambda: len(seen) == 2)
        client.publish(f"{key_prefix}:other", "x")  # another channel: ignored
        time.sleep(0.3)
        assert len(seen) == 2
    finally:
        watcher.stop()
    assert not watcher.is_alive()


def test_bursts_are_coalesced(client: redis.Redis, key_prefix: str) -> None:
    source, seen = Source(), []
    channel = f"{key_prefix}:changes"
    watcher = SnapshotWatcher(source.load, client, channel, seen.append)
    watcher.start()
    try:
        source.delay_s = 0.2  # while one sync is slow, the rest of the burst queues up
        for _ in range(50):
            client.publish(channel, "x")
        _wait_for(lambda: client.pubsub_numsub(channel)[0][1] == 1)
        time.sleep(1.0)
        assert 2 <= len(seen) <= 4
    finally:
        watcher.stop()


def test_resyncs_after_the_connection_is_killed(client: redis.Redis, key_prefix: str) -> None:
    source, seen = Source(), []
    watcher = SnapshotWatcher(source.load, client, f"{key_prefix}:changes", seen.append)
    watcher.start()
    try:
        time.sleep(0.2)
        assert client.client_kill_filter(_type="pubsub") >= 1
        # No message is published: only the reconnect can cause this sync.
        _wait_for(lambda: len(seen) >= 2)
        # And the subscription works again afterwards.
        count = len(seen)
        _wait_for(lambda: client.pubsub_numsub(f"{key_prefix}:changes")[0][1] == 1)
        client.publish(f"{key_prefix}:changes", "x")
        _wait_for(lambda: len(seen) > count)
    finally:
        watcher.stop()


def test_failed_syncs_retry_with_backoff(client: redis.Redis, key_prefix: str) -> None:
    source, seen = Source(), []
    channel = f"{key_prefix}:changes"
    watcher = SnapshotWatcher(
        source.load, client, channel, seen.append, backoff_initial_s=0.05, backoff_max_s=0.2
    )
    watcher.start()
    try:
        source.failures_left = 3
        client.publish(channel, "x")
        _wait_for(lambda: len(seen) >= 2)
        assert source.failures_left == 0
        time.sleep(0.3)
        assert len(seen) == 2  # one resync after recovering, no spurious ones
    finally:
        watcher.stop()


def test_start_raises_when_the_first_sync_fails(client: redis.Redis, key_prefix: str) -> None:
    source = Source()
    source.failures_left = 1
    watcher = SnapshotWatcher(source.load, client, f"{key_prefix}:changes", lambda s: None)
    with pytest.raises(ConnectionError, match="registry unreachable"):
        watcher.start()
    assert not watcher.is_alive()
    assert client.pubsub_numsub(f"{key_prefix}:changes")[0][1] == 0
