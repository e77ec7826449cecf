"""Keeps the N slowest items per key between two drains.

The replica uses it to choose which untraced requests become exported spans: the
slowest few per version and export interval are what an SRE looks for, and
exporting every span would cost more than the request itself (see data_plane).
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SlowestPerKey(Generic[T]):
    """Thread-safe: requests offer on the serving thread, a timer drains."""

    def __init__(self, per_key: int) -> None:
        if per_key < 0:
            raise ValueError(f"per_key must be >= 0, got {per_key}")
        self._per_key = per_key
        self._lock = threading.Lock()
        # Min-heaps of (duration, tie-breaker, item): the root is the fastest kept,
        # the one a slower newcomer evicts. The counter keeps items uncompared.
        self._heaps: dict[Hashable, list[tuple[int, int, T]]] = {}
        self._tiebreak = itertools.count()

    def offer(self, key: Hashable, duration: int, item: T) -> None:
        if self._per_key == 0:
            return
        with self._lock:
            heap = self._heaps.get(key)
            if heap is None:
                self._heaps[key] = [(duration, next(self._tiebreak), item)]
            elif len(heap) < self._per_key:
                heapq.heappush(heap, (duration, next(self._tiebreak), item))
            elif duration > heap[0][0]:
                heapq.heapreplace(heap, (duration, next(self._tiebreak), item))

    def drain(self) -> list[T]:
        """Everything kept since the last drain, slowest first per key; starts afresh."""
        with self._lock:
            heaps, self._heaps = self._heaps, {}
        drained: list[T] = []
        for heap in heaps.values():
            drained.extend(item for _, _, item in sorted(heap, reverse=True))
        return drained
