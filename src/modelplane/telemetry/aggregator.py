"""Per-version latency and error figures built from what the replicas export.

Per (endpoint, model, version) the aggregator keeps:

- totals since it started (requests, errors);
- a ring of 10-second slots covering the last hour, each with a latency histogram,
  request and error counts, and the few slowest requests' trace ids (exemplars).

A query merges the slots inside the window, so any window from 10 s to an hour
costs at most 361 small merges, and memory stays bounded however long it runs.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.stats import LatencyPoint, LatencySeries, VersionStatsRecord
from modelplane.telemetry.histogram import BOUNDS_S, LatencyHistogram, bucket_index, rebin

__all__ = ["SLOT_SECONDS", "SlotState", "StatsAggregator", "VersionStatsRecord"]

SLOT_SECONDS = 10
HORIZON_SECONDS = 3600
# One more slot than the horizon needs: the current slot is only partly filled, so a
# one-hour window reads the 360 full slots before it as well.
RING_SLOTS = HORIZON_SECONDS // SLOT_SECONDS + 1

OK_STATUS = "OK"

_SeriesKey = tuple[str, str, int]


@dataclass
class _Slot:
    epoch: int
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    requests: int = 0
    errors: int = 0
    # Min-heap of (duration_s, trace_id): the root is the fastest kept, so a slower
    # newcomer replaces it in O(log n).
    exemplars: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class _Series:
    requests: int = 0
    errors: int = 0
    ring: list[_Slot | None] = field(default_factory=lambda: [None] * RING_SLOTS)


@dataclass(frozen=True)
class SlotState:
    """One closed 10 s slot of one series, as persisted (see ``persistence``)."""

    endpoint: str
    model: str
    version: int
    epoch: int
    counts: tuple[int, ...]
    total_sum: float
    requests: int
    errors: int
    exemplars: tuple[tuple[float, str], ...]


class StatsAggregator:
    """Thread-safe: OTLP exports arrive on the gRPC thread pool while queries read."""

    def __init__(
        self, clock: Callable[[], float] = time.time, exemplars_per_key: int = 5
    ) -> None:
        if exemplars_per_key < 1:
            raise ValueError(f"exemplars_per_key must be >= 1, got {exemplars_per_key}")
        self._clock = clock
        self._exemplars_per_key = exemplars_per_key
        self._lock = threading.Lock()
        self._series: dict[_SeriesKey, _Series] = {}

    # ------------------------------------------------------------------ writes

    def _slot_for(self, series: _Series, time_s: float, now: float) -> _Slot | None:
        """The ring slot for ``time_s``, reset if it held an older 10 s; None if too old.

        A point stamped in the future (a replica clock ahead of ours) lands in the
        current slot rather than in one the window would not reach yet.
        """
        if time_s > now:
            time_s = now
        if time_s <= now - HORIZON_SECONDS:
            return None
        epoch = int(time_s // SLOT_SECONDS)
        index = epoch % RING_SLOTS
        slot = series.ring[index]
        if slot is None or slot.epoch < epoch:
            slot = _Slot(epoch)
            series.ring[index] = slot
        elif slot.epoch > epoch:
            return None
        return slot

    def add_histogram_point(
        self,
        endpoint: str,
        model: str,
        version: int,
        status: str,
        bucket_counts: Sequence[int],
        explicit_bounds: Sequence[float],
        total_sum: float,
        count: int,
        time_s: float,
    ) -> None:
        """Adds one delta histogram point (seconds), stamped ``time_s`` (epoch seconds).

        Points whose bounds are not ``BOUNDS_S`` are re-binned onto them. Counting
        follows the buckets; ``count`` is used only when a sender sent no buckets.
        """
        if tuple(explicit_bounds) == BOUNDS_S:
            if len(bucket_counts) != len(BOUNDS_S) + 1:
                raise ValueError(
                    f"bucket_counts must have {len(BOUNDS_S) + 1} entries, "
                    f"got {len(bucket_counts)}"
                )
            counts: Sequence[int] = bucket_counts
        elif bucket_counts:
            counts = rebin(bucket_counts, explicit_bounds)
        elif count > 0:
            # A point carrying only count and sum: file every request at the mean.
            counts = self._at_mean(total_sum, count)
        else:
            return
        requests = sum(counts)
        if requests == 0:
            return
        errors = 0 if status == OK_STATUS else requests
        key = (endpoint, model, version)
        with self._lock:
            now = self._clock()
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
            series.requests += requests
            series.errors += errors
            slot = self._slot_for(series, time_s, now)
            if slot is not None:
                slot.histogram.add_counts(counts, total_sum)
                slot.requests += requests
                slot.errors += errors

    @staticmethod
    def _at_mean(total_sum: float, count: int) -> list[int]:
        counts = [0] * (len(BOUNDS_S) + 1)
        counts[bucket_index(total_sum / count)] = count
        return counts

    def add_exemplar(
        self,
        endpoint: str,
        model: str,
        version: int,
        trace_id_hex: str,
        duration_s: float,
        time_s: float,
    ) -> None:
        """Offers one request as an exemplar; each 10 s slot keeps its N slowest."""
        key = (endpoint, model, version)
        with self._lock:
            now = self._clock()
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
            slot = self._slot_for(series, time_s, now)
            if slot is None:
                return
            entry = (duration_s, trace_id_hex)
            if len(slot.exemplars) < self._exemplars_per_key:
                heapq.heappush(slot.exemplars, entry)
            elif entry > slot.exemplars[0]:
                heapq.heapreplace(slot.exemplars, entry)

    # ------------------------------------------------------------- persistence

    def slots_between(self, first_epoch: int, last_epoch: int) -> list[SlotState]:
        """Copies of every slot whose epoch lies in [first_epoch, last_epoch]."""
        states: list[SlotState] = []
        with self._lock:
            for key, series in self._series.items():
                for slot in series.ring:
                    if slot is None or not first_epoch <= slot.epoch <= last_epoch:
                        continue
                    if slot.requests == 0 and not slot.exemplars:
                        continue
                    states.append(
                        SlotState(
                            key[0], key[1], key[2], slot.epoch,
                            tuple(slot.histogram.counts), slot.histogram.sum,
                            slot.requests, slot.errors, tuple(slot.exemplars),
                        )
                    )
        return states

    def totals(self) -> dict[_SeriesKey, tuple[int, int]]:
        with self._lock:
            return {key: (s.requests, s.errors) for key, s in self._series.items()}

    def restore(
        self, slots: Sequence[SlotState], totals: dict[_SeriesKey, tuple[int, int]]
    ) -> int:
        """Loads persisted slots and totals (at start, before exports arrive).

        A slot is taken only if the ring position is free or holds an older epoch,
        so restoring never overwrites what live exports already filled. Returns
        how many slots were restored.
        """
        restored = 0
        with self._lock:
            now = self._clock()
            for key, (requests, errors) in totals.items():
                series = self._series.setdefault(key, _Series())
                series.requests += requests
                series.errors += errors
            for state in slots:
                if state.epoch * SLOT_SECONDS <= now - HORIZON_SECONDS:
                    continue
                key = (state.endpoint, state.model, state.version)
                series = self._series.setdefault(key, _Series())
                index = state.epoch % RING_SLOTS
                current = series.ring[index]
                if current is not None and current.epoch >= state.epoch:
                    continue
                slot = _Slot(state.epoch)
                slot.histogram.add_counts(state.counts, state.total_sum)
                slot.requests = state.requests
                slot.errors = state.errors
                slot.exemplars = list(state.exemplars)
                heapq.heapify(slot.exemplars)
                series.ring[index] = slot
                restored += 1
        return restored

    # ------------------------------------------------------------------- reads

    def series(
        self, endpoint: str | None, window_s: int, step_s: int
    ) -> list[LatencySeries]:
        """Per version, the window cut into ``step_s`` steps, oldest first.

        ``step_s`` is rounded to whole 10 s slots. Empty steps are kept (zero
        requests) so every version's points line up on the same time axis.
        """
        if not 1 <= window_s <= HORIZON_SECONDS:
            raise InvalidArgument(
                f"window_seconds must be between 1 and {HORIZON_SECONDS}, got {window_s}"
            )
        if not SLOT_SECONDS <= step_s <= window_s:
            raise InvalidArgument(
                f"step_seconds must be between {SLOT_SECONDS} and the window ({window_s}), "
                f"got {step_s}"
            )
        slots_per_step = max(step_s // SLOT_SECONDS, 1)
        steps = max(math.ceil(window_s / (slots_per_step * SLOT_SECONDS)), 1)
        result: list[LatencySeries] = []
        with self._lock:
            now_epoch = int(self._clock() // SLOT_SECONDS)
            # Steps end with the current (partial) slot.
            first_epoch = now_epoch - steps * slots_per_step + 1
            for key in sorted(self._series):
                if endpoint and key[0] != endpoint:
                    continue
                series = self._series[key]
                if series.requests == 0:
                    continue
                histograms = [LatencyHistogram() for _ in range(steps)]
                requests = [0] * steps
                errors = [0] * steps
                for slot in series.ring:
                    if slot is None or not first_epoch <= slot.epoch <= now_epoch:
                        continue
                    i = (slot.epoch - first_epoch) // slots_per_step
                    histograms[i].merge(slot.histogram)
                    requests[i] += slot.requests
                    errors[i] += slot.errors
                points = tuple(
                    LatencyPoint(
                        start_s=(first_epoch + i * slots_per_step) * SLOT_SECONDS,
                        requests=requests[i],
                        errors=errors[i],
                        p50_ms=histograms[i].quantile(0.50) * 1000.0,
                        p99_ms=histograms[i].quantile(0.99) * 1000.0,
                    )
                    for i in range(steps)
                )
                result.append(
                    LatencySeries(key[0], key[1], key[2], slots_per_step * SLOT_SECONDS, points)
                )
        return result

    def window_between(
        self, endpoint: str | None, start_s: float, end_s: float
    ) -> list[VersionStatsRecord]:
        """Figures per version of ``endpoint`` over the slots in [start_s, end_s).

        What a rollout gate reads: exactly the time since its step began, not a
        sliding window that still holds the previous step's traffic.
        """
        first_epoch = int(start_s // SLOT_SECONDS)
        last_epoch = int(end_s // SLOT_SECONDS)
        window = max(int(end_s - start_s), 1)
        records: list[VersionStatsRecord] = []
        with self._lock:
            for key in sorted(self._series):
                if endpoint and key[0] != endpoint:
                    continue
                series = self._series[key]
                records.append(self._record(key, series, first_epoch, last_epoch, window))
        return records

    def query(self, endpoint: str | None, window_s: int) -> list[VersionStatsRecord]:
        """Figures per version, sorted by (endpoint, model, version).

        ``endpoint`` None (or "") means every endpoint. The window is rounded up to
        whole 10 s slots plus the current, partly filled one, so it covers between
        ``window_s`` and ``window_s + 10`` seconds. Percentiles cover every request
        in the window, failed ones included (a fast failure is latency a caller saw).
        Versions that have only exemplars and no counted request yet are left out.
        """
        if not 1 <= window_s <= HORIZON_SECONDS:
            raise InvalidArgument(
                f"window_seconds must be between 1 and {HORIZON_SECONDS}, got {window_s}"
            )
        slots_in_window = min(math.ceil(window_s / SLOT_SECONDS) + 1, RING_SLOTS)
        records: list[VersionStatsRecord] = []
        with self._lock:
            now_epoch = int(self._clock() // SLOT_SECONDS)
            oldest_epoch = now_epoch - slots_in_window + 1
            for key in sorted(self._series):
                if endpoint and key[0] != endpoint:
                    continue
                series = self._series[key]
                if series.requests == 0:
                    continue
                records.append(self._record(key, series, oldest_epoch, now_epoch, window_s))
        return records

    def _record(
        self,
        key: _SeriesKey,
        series: _Series,
        oldest_epoch: int,
        now_epoch: int,
        window_s: int,
    ) -> VersionStatsRecord:
        histogram = LatencyHistogram()
        requests = errors = 0
        exemplars: list[tuple[float, str]] = []
        for slot in series.ring:
            if slot is None or not oldest_epoch <= slot.epoch <= now_epoch:
                continue
            histogram.merge(slot.histogram)
            requests += slot.requests
            errors += slot.errors
            exemplars.extend(slot.exemplars)
        slowest: list[str] = []
        for _, trace_id in sorted(exemplars, reverse=True):
            if trace_id not in slowest:
                slowest.append(trace_id)
            if len(slowest) == self._exemplars_per_key:
                break
        return VersionStatsRecord(
            endpoint=key[0],
            model=key[1],
            version=key[2],
            request_count=series.requests,
            error_count=series.errors,
            window_request_count=requests,
            window_error_count=errors,
            p50_ms=histogram.quantile(0.50) * 1000.0,
            p90_ms=histogram.quantile(0.90) * 1000.0,
            p99_ms=histogram.quantile(0.99) * 1000.0,
            window_seconds=window_s,
            exemplar_trace_ids=tuple(slowest),
            p999_ms=histogram.quantile(0.999) * 1000.0,
        )
