"""Drift of a version's inputs and outputs against its own first predictions.

Replicas export a sample of every input feature and output value per version as
the histogram ``modelplane.feature.value`` (the same bins on every replica, so
histograms add up). OTel histograms refuse negative values, so what is recorded
is each value's bin index over ``DRIFT_BOUNDS`` (``bin_index``), on the index
bounds ``INDEX_BOUNDS``: bucket i of the exported histogram is drift bin i.
Per (endpoint, model, version, feature) the first ``baseline_count``
observations form the baseline; what came in over the last ``window_s``
seconds is compared with it by the population stability index (PSI) and the
Kolmogorov-Smirnov statistic (the largest gap between the two binned CDFs).
A version's drift is the worst of its features.

Rule of thumb for PSI: < 0.1 stable, 0.1-0.25 some shift, > 0.25 drifted.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def _drift_bounds() -> tuple[float, ...]:
    # Symmetric and logarithmic: any feature scale from 0.01 to 100 gets ~8 bins
    # per decade without knowing the data in advance.
    positives = [float(f"{0.01 * 10 ** (i / 8):.4g}") for i in range(33)]
    return (*(-b for b in reversed(positives)), 0.0, *positives)


DRIFT_BOUNDS: tuple[float, ...] = _drift_bounds()
BIN_COUNT = len(DRIFT_BOUNDS) + 1
# Bounds of the exported histogram of bin indices: bucket i holds index i.
INDEX_BOUNDS: tuple[float, ...] = tuple(i + 0.5 for i in range(BIN_COUNT - 1))
_EPSILON = 1e-4


def bin_index(value: float) -> int:
    return bisect.bisect_left(DRIFT_BOUNDS, value)


def psi(expected: Sequence[int], actual: Sequence[int]) -> float:
    """Population stability index of ``actual`` against ``expected`` (bin counts)."""
    total_e, total_a = sum(expected), sum(actual)
    if total_e == 0 or total_a == 0:
        return 0.0
    score = 0.0
    for e, a in zip(expected, actual, strict=True):
        # Empty bins get a small share so the logarithm stays finite.
        pe = max(e / total_e, _EPSILON)
        pa = max(a / total_a, _EPSILON)
        score += (pa - pe) * math.log(pa / pe)
    return score


def ks(expected: Sequence[int], actual: Sequence[int]) -> float:
    """Largest gap between the two binned empirical CDFs (0..1)."""
    total_e, total_a = sum(expected), sum(actual)
    if total_e == 0 or total_a == 0:
        return 0.0
    cum_e = cum_a = 0
    gap = 0.0
    for e, a in zip(expected, actual, strict=True):
        cum_e += e
        cum_a += a
        gap = max(gap, abs(cum_e / total_e - cum_a / total_a))
    return gap


@dataclass(frozen=True)
class DriftScore:
    psi: float
    ks: float
    feature: str
    baseline_count: int
    recent_count: int


@dataclass
class _Feature:
    baseline: list[int] = field(default_factory=lambda: [0] * BIN_COUNT)
    baseline_count: int = 0
    # (time_s, counts) batches after the baseline filled, newest last.
    recent: deque[tuple[float, list[int]]] = field(default_factory=deque)


VersionKey = tuple[str, str, int]


class DriftTracker:
    """Thread-safe; fed by the OTLP metrics receiver, read by stats and alerts."""

    def __init__(
        self,
        baseline_count: int = 500,
        window_s: float = 300.0,
        min_recent: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if baseline_count < 1 or min_recent < 1 or window_s <= 0:
            raise ValueError("baseline_count and min_recent must be >= 1, window_s > 0")
        self._baseline_count = baseline_count
        self._window_s = window_s
        self._min_recent = min_recent
        self._clock = clock
        self._lock = threading.Lock()
        self._features: dict[VersionKey, dict[str, _Feature]] = {}

    def add(
        self, endpoint: str, model: str, version: int, feature: str,
        counts: Sequence[int], time_s: float,
    ) -> None:
        if len(counts) != BIN_COUNT:
            raise ValueError(f"bucket_counts must have {BIN_COUNT} entries, got {len(counts)}")
        with self._lock:
            features = self._features.setdefault((endpoint, model, version), {})
            state = features.setdefault(feature, _Feature())
            remaining = list(counts)
            room = self._baseline_count - state.baseline_count
            total = sum(remaining)
            if room > 0 and total > 0:
                # The baseline takes what it still lacks, as the same share of every
                # bin (a batch straddling the boundary must not bias it).
                for i, take in enumerate(_apportion(remaining, min(room, total))):
                    state.baseline[i] += take
                    state.baseline_count += take
                    remaining[i] -= take
            if any(remaining):
                state.recent.append((time_s, remaining))
            cutoff = self._clock() - self._window_s
            while state.recent and state.recent[0][0] < cutoff:
                state.recent.popleft()

    def scores(self) -> dict[VersionKey, DriftScore]:
        """The worst feature per version, for versions with enough data on both sides."""
        cutoff = self._clock() - self._window_s
        result: dict[VersionKey, DriftScore] = {}
        with self._lock:
            for key, features in self._features.items():
                worst: DriftScore | None = None
                for name, state in features.items():
                    if state.baseline_count < self._baseline_count:
                        continue
                    recent = [0] * BIN_COUNT
                    for t, counts in state.recent:
                        if t >= cutoff:
                            for i, n in enumerate(counts):
                                recent[i] += n
                    total = sum(recent)
                    if total < self._min_recent:
                        continue
                    score = DriftScore(
                        psi(state.baseline, recent), ks(state.baseline, recent), name,
                        state.baseline_count, total,
                    )
                    if worst is None or score.psi > worst.psi:
                        worst = score
                if worst is not None:
                    result[key] = worst
        return result


def _apportion(counts: Sequence[int], seats: int) -> list[int]:
    """``seats`` split over the bins in proportion to ``counts`` (largest remainders)."""
    total = sum(counts)
    exact = [n * seats / total for n in counts]
    taken = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: exact[i] - taken[i], reverse=True)
    for i in by_remainder[: seats - sum(taken)]:
        taken[i] += 1
    return taken
