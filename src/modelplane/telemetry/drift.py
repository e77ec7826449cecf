"""Drift of a version's inputs and outputs against its own first predictions.

Replicas export a sample of every input feature and output value per version as
the histogram ``modelplane.feature.value`` (the same bins on every replica, so
histograms add up). OTel histograms refuse negative values, so what is recorded
is each value's bin index over ``DRIFT_BOUNDS`` (``bin_index``), on the index
bounds ``INDEX_BOUNDS``: bucket i of the exported histogram is drift bin i.
Per (endpoint, model, version, feature) the first ``baseline_count``
observations form the baseline; what came in over the last ``window_s``
seconds (in 10 s slots) is compared with it by the population stability index
(PSI) and the Kolmogorov-Smirnov statistic (the largest gap between the two
binned CDFs). A version's drift is the worst of its features.

The state is bin counts only, so it adds up and survives a restart: what changed
since the last flush is handed out by ``take_dirty`` and loaded back by
``restore`` (see ``quality_persistence``).

Rule of thumb for PSI: < 0.1 stable, 0.1-0.25 some shift, > 0.25 drifted.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
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
# Recent counts are summed per slot of this many seconds: memory and persisted
# state grow with the window, not with how often replicas export.
DRIFT_SLOT_SECONDS = 10
# A sender naming ever new features must not grow the state without bound.
MAX_FEATURES_PER_VERSION = 256


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


VersionKey = tuple[str, str, int]


@dataclass(frozen=True)
class BaselineState:
    """One feature's baseline (complete or still filling), as persisted."""

    endpoint: str
    model: str
    version: int
    feature: str
    counts: tuple[int, ...]

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class DriftSlotState:
    """One feature's recent counts over one ``DRIFT_SLOT_SECONDS`` slot, as persisted."""

    endpoint: str
    model: str
    version: int
    feature: str
    epoch: int
    counts: tuple[int, ...]


@dataclass
class _Feature:
    baseline: list[int] = field(default_factory=lambda: [0] * BIN_COUNT)
    baseline_count: int = 0
    # Slot epoch -> counts that came after the baseline filled.
    recent: dict[int, list[int]] = field(default_factory=dict)


_FeatureKey = tuple[str, str, int, str]


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
        # What changed since the last ``take_dirty``: baselines and recent slots.
        self._dirty_baselines: set[_FeatureKey] = set()
        self._dirty_slots: set[tuple[_FeatureKey, int]] = set()
        self._captured: list[Callable[[], None]] = []

    @property
    def window_s(self) -> float:
        return self._window_s

    def on_baseline_captured(self, callback: Callable[[], None]) -> None:
        """Calls ``callback`` (outside the lock) whenever a feature's baseline fills."""
        self._captured.append(callback)

    def _cutoff_epoch(self, now: float) -> int:
        return int((now - self._window_s) // DRIFT_SLOT_SECONDS)

    def add(
        self, endpoint: str, model: str, version: int, feature: str,
        counts: Sequence[int], time_s: float,
    ) -> None:
        if len(counts) != BIN_COUNT:
            raise ValueError(f"bucket_counts must have {BIN_COUNT} entries, got {len(counts)}")
        captured = False
        with self._lock:
            now = self._clock()
            features = self._features.setdefault((endpoint, model, version), {})
            state = features.get(feature)
            if state is None:
                if len(features) >= MAX_FEATURES_PER_VERSION:
                    raise ValueError(
                        f"feature '{feature}': {model}:{version} already tracks "
                        f"{MAX_FEATURES_PER_VERSION} features"
                    )
                state = features[feature] = _Feature()
            fkey = (endpoint, model, version, feature)
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
                self._dirty_baselines.add(fkey)
                captured = state.baseline_count >= self._baseline_count
            cutoff = self._cutoff_epoch(now)
            # A replica clock ahead of ours files into the current slot.
            epoch = int(min(time_s, now) // DRIFT_SLOT_SECONDS)
            if any(remaining) and epoch >= cutoff:
                slot = state.recent.get(epoch)
                if slot is None:
                    state.recent[epoch] = remaining
                else:
                    for i, n in enumerate(remaining):
                        slot[i] += n
                self._dirty_slots.add((fkey, epoch))
            for old in [e for e in state.recent if e < cutoff]:
                del state.recent[old]
        if captured:
            for callback in self._captured:
                callback()

    def scores(self) -> dict[VersionKey, DriftScore]:
        """The worst feature per version, for versions with enough data on both sides."""
        result: dict[VersionKey, DriftScore] = {}
        with self._lock:
            cutoff = self._cutoff_epoch(self._clock())
            for key, features in self._features.items():
                worst: DriftScore | None = None
                for name, state in features.items():
                    if state.baseline_count < self._baseline_count:
                        continue
                    recent = [0] * BIN_COUNT
                    for epoch, counts in state.recent.items():
                        if epoch >= cutoff:
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

    # ------------------------------------------------------------- persistence

    def take_dirty(self) -> tuple[list[BaselineState], list[DriftSlotState]]:
        """Copies of the baselines and recent slots changed since the last call."""
        baselines: list[BaselineState] = []
        slots: list[DriftSlotState] = []
        with self._lock:
            for fkey in self._dirty_baselines:
                state = self._features.get(fkey[:3], {}).get(fkey[3])
                if state is not None:
                    baselines.append(BaselineState(*fkey, tuple(state.baseline)))
            for fkey, epoch in self._dirty_slots:
                state = self._features.get(fkey[:3], {}).get(fkey[3])
                counts = state.recent.get(epoch) if state is not None else None
                if counts is not None:
                    slots.append(DriftSlotState(*fkey, epoch, tuple(counts)))
            self._dirty_baselines.clear()
            self._dirty_slots.clear()
        return baselines, slots

    def mark_dirty(
        self, baselines: Iterable[BaselineState], slots: Iterable[DriftSlotState]
    ) -> None:
        """Hands back what ``take_dirty`` gave when writing it failed: the next take
        returns it again (with whatever was added meanwhile)."""
        with self._lock:
            for b in baselines:
                self._dirty_baselines.add((b.endpoint, b.model, b.version, b.feature))
            for s in slots:
                self._dirty_slots.add(((s.endpoint, s.model, s.version, s.feature), s.epoch))

    def restore(
        self, baselines: Iterable[BaselineState], slots: Iterable[DriftSlotState]
    ) -> int:
        """Loads persisted state (at start, before exports arrive); returns the
        baselines and slots taken. A baseline replaces a smaller one in memory;
        slots older than the window are skipped, others add to what is there."""
        taken = 0
        with self._lock:
            cutoff = self._cutoff_epoch(self._clock())
            for b in baselines:
                if len(b.counts) != BIN_COUNT:
                    continue
                state = self._feature_for(b.endpoint, b.model, b.version, b.feature)
                if state is None:
                    continue
                if b.count > state.baseline_count:
                    state.baseline = list(b.counts)
                    state.baseline_count = b.count
                    taken += 1
            for s in slots:
                if s.epoch < cutoff or len(s.counts) != BIN_COUNT:
                    continue
                state = self._feature_for(s.endpoint, s.model, s.version, s.feature)
                if state is None:
                    continue
                slot = state.recent.setdefault(s.epoch, [0] * BIN_COUNT)
                for i, n in enumerate(s.counts):
                    slot[i] += n
                taken += 1
        return taken

    def _feature_for(self, endpoint: str, model: str, version: int, name: str) -> _Feature | None:
        features = self._features.setdefault((endpoint, model, version), {})
        state = features.get(name)
        if state is None and len(features) < MAX_FEATURES_PER_VERSION:
            state = features[name] = _Feature()
        return state

    def versions(self) -> list[VersionKey]:
        with self._lock:
            return sorted(self._features)

    def forget(self, model: str, version: int) -> list[VersionKey]:
        """Drops every endpoint's state of ``model:version`` (the version is gone);
        returns the keys dropped."""
        with self._lock:
            gone = [k for k in self._features if k[1] == model and k[2] == version]
            for key in gone:
                del self._features[key]
            self._dirty_baselines = {f for f in self._dirty_baselines if f[:3] not in gone}
            self._dirty_slots = {s for s in self._dirty_slots if s[0][:3] not in gone}
        return gone


def _apportion(counts: Sequence[int], seats: int) -> list[int]:
    """``seats`` split over the bins in proportion to ``counts`` (largest remainders)."""
    total = sum(counts)
    exact = [n * seats / total for n in counts]
    taken = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(counts)), key=lambda i: exact[i] - taken[i], reverse=True)
    for i in by_remainder[: seats - sum(taken)]:
        taken[i] += 1
    return taken
