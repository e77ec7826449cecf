"""A daemon thread that writes in-memory telemetry state to Redis periodically.

Shared by the latency aggregates (``persistence.py``) and the drift/feedback state
(``quality_persistence.py``): both keep their state in memory and flush it on an
interval, on demand (``wake``) and once more when stopping.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)


class FlushLoop:
    def __init__(self, flush: Callable[[], object], thread_name: str, what: str) -> None:
        """``what`` names the state in log lines ("telemetry", "drift/feedback")."""
        self._flush = flush
        self._thread_name = thread_name
        self._what = what
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval_s: float) -> None:
        """Flushes every ``interval_s`` (and on ``wake``) until ``stop``."""
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name=self._thread_name, daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        """Flushes now instead of at the end of the interval."""
        self._wake.set()

    def _loop(self, interval_s: float) -> None:
        while True:
            self._wake.wait(interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._flush()
            except redis.RedisError as error:
                # Redis down: the state stays in memory and the next flush retries it.
                log.warning("%s flush to Redis failed: %s", self._what, error)
            except Exception:
                # Whatever else went wrong, the loop keeps going: persistence must
                # not stop for good over one bad flush.
                log.exception("%s flush failed", self._what)

    def stop(self) -> None:
        """Stops the loop and writes one last time (best effort)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self._flush()
        except redis.RedisError as error:
            log.warning("final %s flush to Redis failed: %s", self._what, error)
