"""Cumulative OTLP histogram points turned into deltas, per stream.

Our replicas export DELTA, but any stock SDK left at its default exports
CUMULATIVE; the aggregator only adds, so cumulative points are differenced here.

A stream is (resource attributes, point attributes, start time): a restarted
process starts a new stream, so its counts are never subtracted from the old one's.
The first point of a stream follows the collector's ``initial_value: auto`` rule:
it counts in full if the stream started after this converter did (its whole
history is new to us), otherwise it only sets the baseline (its history predates
us and was never meant to be counted here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

# A stream not heard from for this long is forgotten.
STALE_AFTER_S = 3600.0
_SWEEP_EVERY_S = 60.0


@dataclass(frozen=True)
class HistogramDelta:
    bucket_counts: tuple[int, ...]
    total_sum: float
    count: int


@dataclass
class _Last:
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    total_sum: float
    count: int
    seen_s: float


class CumulativeToDelta:
    """Not thread-safe on its own; the receiver calls it under its lock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._started_ns = int(clock() * 1e9)
        self._streams: dict[Hashable, _Last] = {}
        self._next_sweep_s = clock() + _SWEEP_EVERY_S

    def __len__(self) -> int:
        return len(self._streams)

    def convert(
        self,
        stream: Hashable,
        start_time_ns: int,
        explicit_bounds: Sequence[float],
        bucket_counts: Sequence[int],
        total_sum: float,
        count: int,
    ) -> HistogramDelta | None:
        """The delta since the stream's previous point; None when nothing is to be added."""
        now = self._clock()
        self._sweep(now)
        bounds = tuple(explicit_bounds)
        counts = tuple(bucket_counts)
        last = self._streams.get(stream)
        self._streams[stream] = _Last(bounds, counts, total_sum, count, now)
        if last is None:
            if start_time_ns >= self._started_ns:
                return HistogramDelta(counts, total_sum, count)
            return None
        if last.bounds != bounds or count < last.count or len(counts) != len(last.bucket_counts):
            # The sender reset (or changed its buckets) without a new start time: what
            # it reports now is all new.
            return HistogramDelta(counts, total_sum, count)
        deltas = tuple(n - was for n, was in zip(counts, last.bucket_counts, strict=True))
        if any(d < 0 for d in deltas):
            return HistogramDelta(counts, total_sum, count)
        if count == last.count:
            return None
        return HistogramDelta(deltas, total_sum - last.total_sum, count - last.count)

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep_s:
            return
        self._next_sweep_s = now + _SWEEP_EVERY_S
        stale = [key for key, last in self._streams.items() if now - last.seen_s > STALE_AFTER_S]
        for key in stale:
            del self._streams[key]
