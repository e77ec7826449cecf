"""Keeps a replica's serving snapshot current: Redis pub/sub in, full resyncs out.

Messages on the changes channel carry no payload we rely on; each one only says
"something changed", and the answer is always a full, consistent snapshot read.
That makes lost or reordered messages harmless as long as a resync follows every
gap, which is why the watcher resyncs after every (re)subscribe and, as a safety
net, every ``resync_interval_s``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from modelplane.domain.models import ServingSnapshot

_log = logging.getLogger(__name__)


class SnapshotWatcher:
    """A daemon thread feeding ``on_snapshot`` with fresh snapshots.

    ``start()`` subscribes and performs the first sync synchronously, so the
    caller has a snapshot before it serves; it raises if that first sync fails.
    Afterwards every failure (Redis down, a bad read, a raising callback) is
    logged and retried with capped, jittered backoff, and whatever the callback
    installed last keeps serving meanwhile.
    """

    def __init__(
        self,
        load_snapshot: Callable[[], ServingSnapshot],
        redis_client: Any,
        channel: str,
        on_snapshot: Callable[[ServingSnapshot], None],
        *,
        poll_timeout_s: float = 0.5,
        resync_interval_s: float = 30.0,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
    ) -> None:
        self._load_snapshot = load_snapshot
        self._redis = redis_client
        self._channel = channel
        self._on_snapshot = on_snapshot
        self._poll_timeout_s = poll_timeout_s
        self._resync_interval_s = resync_interval_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self._last_sync = 0.0
        # Set from redis-py's connect callback when the pub/sub connection
        # reconnects by itself (it retries and resubscribes silently).
        self._reconnected = threading.Event()
        self.syncs = 0
        """Completed syncs; lets tests and health checks see the watcher make progress."""

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the watcher is already started")
        # Subscribe before reading, so a change landing between the read and the
        # subscription still produces a message and another sync.
        self._pubsub = self._subscribe()
        try:
            self._sync()
        except BaseException:
            self._close_pubsub()
            raise
        self._thread = threading.Thread(
            target=self._run, name=f"snapshot-watcher[{self._channel}]", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
        self._close_pubsub()

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- internals

    def _subscribe(self) -> Any:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self._channel)
            # Registered after the first connect, so it fires only on reconnects:
            # messages published while the connection was down are lost, and only
            # a resync makes up for them.
            connection = getattr(pubsub, "connection", None)
            if connection is not None:
                connection.register_connect_callback(self._on_reconnect)
        except BaseException:
            pubsub.close()
            raise
        return pubsub

    def _on_reconnect(self, _connection: Any) -> None:
        self._reconnected.set()

    def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                # The connection goes back to the pool and may serve the next
                # subscription: its first connect there is not a reconnect.
                connection = getattr(pubsub, "connection", None)
                if connection is not None:
                    connection.deregister_connect_callback(self._on_reconnect)
                pubsub.close()
            except Exception:  # closing a broken connection may fail; nothing to save
                _log.debug("closing the pub/sub connection failed", exc_info=True)

    def _sync(self) -> None:
        snapshot = self._load_snapshot()
        self._on_snapshot(snapshot)
        self.syncs += 1
        self._last_sync = time.monotonic()

    def _run(self) -> None:
        backoff = self._backoff_initial_s
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._pubsub = self._subscribe()
                    self._sync()  # we may have missed messages while away
                    _log.info("resubscribed to %s and resynced", self._channel)
                self._wait_and_sync()
                backoff = self._backoff_initial_s
            except Exception:
                _log.warning(
                    "snapshot sync on %s failed; retrying in about %.1f s",
                    self._channel,
                    backoff,
                    exc_info=True,
                )
                self._close_pubsub()
                # Full jitter keeps a fleet of replicas from reconnecting in step.
                self._stop.wait(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, self._backoff_max_s)

    def _wait_and_sync(self) -> None:
        pubsub = self._pubsub
        message = pubsub.get_message(timeout=self._poll_timeout_s)
        if self._reconnected.is_set():
            self._reconnected.clear()
            _log.info("pub/sub on %s reconnected; resyncing", self._channel)
            self._sync()
            return
        if message is None:
            if time.monotonic() - self._last_sync >= self._resync_interval_s:
                self._sync()
            return
        # Coalesce a burst: every pending message is answered by the one read below.
        while pubsub.get_message(timeout=0) is not None:
            pass
        self._sync()
