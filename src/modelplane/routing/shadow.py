"""Shadow traffic bookkeeping: how often a shadow version agrees with the primary.

A replica keeps one ``ShadowTally`` per (endpoint, primary, shadow) in a
``ShadowBook``; the book is published with the replica's heartbeat as JSON, and
the control plane merges the books of the live replicas (``merge_books``).
Counts are cumulative since the replica started, so merging is a sum.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from modelplane.domain.models import VersionKey

# Outputs agree when every element is within these tolerances (np.allclose).
AGREE_RTOL = 1e-4
AGREE_ATOL = 1e-5


@dataclass(frozen=True, slots=True)
class Comparison:
    agreed: bool
    mean_abs_diff: float
    max_abs_diff: float


def compare(primary: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray]) -> Comparison:
    """Element-wise comparison of every output both answers have.

    Outputs that differ in name, shape or kind count as disagreement with an
    infinite difference: the shadow answered something else entirely.
    """
    if set(primary) != set(shadow):
        return Comparison(False, float("inf"), float("inf"))
    total = 0.0
    count = 0
    worst = 0.0
    agreed = True
    for name, expected in primary.items():
        got = shadow[name]
        if expected.shape != got.shape:
            return Comparison(False, float("inf"), float("inf"))
        if expected.dtype.kind not in "fiub" or got.dtype.kind not in "fiub":
            same = bool(np.array_equal(expected, got))
            agreed = agreed and same
            worst = max(worst, 0.0 if same else float("inf"))
            continue
        if expected.size == 0:
            continue
        diff = np.abs(expected.astype(np.float64) - got.astype(np.float64))
        total += float(diff.sum())
        count += diff.size
        worst = max(worst, float(diff.max()))
        agreed = agreed and bool(
            np.allclose(got, expected, rtol=AGREE_RTOL, atol=AGREE_ATOL, equal_nan=True)
        )
    return Comparison(agreed, total / count if count else 0.0, worst)


@dataclass(slots=True)
class ShadowTally:
    endpoint: str
    primary: VersionKey
    shadow: VersionKey
    compared: int = 0
    agreed: int = 0
    errors: int = 0
    # Sum over comparisons of each one's mean absolute difference.
    sum_mean_abs_diff: float = 0.0
    max_abs_diff: float = 0.0
    replicas: int = 1

    @property
    def agreement(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0

    @property
    def mean_abs_diff(self) -> float:
        return self.sum_mean_abs_diff / self.compared if self.compared else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "primary": [self.primary.model, self.primary.version],
            "shadow": [self.shadow.model, self.shadow.version],
            "compared": self.compared,
            "agreed": self.agreed,
            "errors": self.errors,
            "sum_mean_abs_diff": self.sum_mean_abs_diff,
            # JSON has no infinity; a shape mismatch is reported as -1.
            "max_abs_diff": self.max_abs_diff if np.isfinite(self.max_abs_diff) else -1.0,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ShadowTally:
        primary = data["primary"]
        shadow = data["shadow"]
        assert isinstance(primary, list) and isinstance(shadow, list)
        max_abs = float(data["max_abs_diff"])  # type: ignore[arg-type]
        return cls(
            endpoint=str(data["endpoint"]),
            primary=VersionKey(str(primary[0]), int(primary[1])),
            shadow=VersionKey(str(shadow[0]), int(shadow[1])),
            compared=int(data["compared"]),  # type: ignore[call-overload]
            agreed=int(data["agreed"]),  # type: ignore[call-overload]
            errors=int(data["errors"]),  # type: ignore[call-overload]
            sum_mean_abs_diff=float(data["sum_mean_abs_diff"]),  # type: ignore[arg-type]
            max_abs_diff=float("inf") if max_abs < 0 else max_abs,
        )


class ShadowBook:
    """Thread-safe tallies of one replica."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, VersionKey, VersionKey], ShadowTally] = {}

    def _tally(self, endpoint: str, primary: VersionKey, shadow: VersionKey) -> ShadowTally:
        key = (endpoint, primary, shadow)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = ShadowTally(endpoint, primary, shadow)
        return tally

    def record(
        self, endpoint: str, primary: VersionKey, shadow: VersionKey, result: Comparison
    ) -> None:
        with self._lock:
            tally = self._tally(endpoint, primary, shadow)
            tally.compared += 1
            tally.agreed += int(result.agreed)
            if np.isfinite(result.mean_abs_diff):
                tally.sum_mean_abs_diff += result.mean_abs_diff
            tally.max_abs_diff = max(tally.max_abs_diff, result.max_abs_diff)

    def record_error(self, endpoint: str, primary: VersionKey, shadow: VersionKey) -> None:
        with self._lock:
            self._tally(endpoint, primary, shadow).errors += 1

    def tallies(self) -> list[ShadowTally]:
        with self._lock:
            return [
                ShadowTally(
                    t.endpoint, t.primary, t.shadow, t.compared, t.agreed, t.errors,
                    t.sum_mean_abs_diff, t.max_abs_diff,
                )
                for t in self._tallies.values()
            ]

    def to_json(self) -> str:
        return json.dumps([tally.to_json() for tally in self.tallies()], separators=(",", ":"))


def merge_books(books: Iterable[str], endpoint: str = "") -> list[ShadowTally]:
    """Sums the JSON books of several replicas, per (endpoint, primary, shadow)."""
    merged: dict[tuple[str, VersionKey, VersionKey], ShadowTally] = {}
    for book in books:
        for item in json.loads(book):
            tally = ShadowTally.from_json(item)
            if endpoint and tally.endpoint != endpoint:
                continue
            key = (tally.endpoint, tally.primary, tally.shadow)
            into = merged.get(key)
            if into is None:
                merged[key] = tally
                continue
            into.compared += tally.compared
            into.agreed += tally.agreed
            into.errors += tally.errors
            into.sum_mean_abs_diff += tally.sum_mean_abs_diff
            into.max_abs_diff = max(into.max_abs_diff, tally.max_abs_diff)
            into.replicas += 1
    return sorted(merged.values(), key=lambda t: (t.endpoint, str(t.primary), str(t.shadow)))
