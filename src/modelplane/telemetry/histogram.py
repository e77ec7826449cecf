"""Latency bucket boundaries shared by the replicas and the control plane, and a
mergeable histogram over them.

Replicas export ``modelplane.predict.duration`` as an OTLP explicit-bucket histogram
with exactly ``BOUNDS_S`` (a View sets them), so the aggregator adds bucket counts
without re-binning. The boundaries are geometric: every bucket is ~15% wider than
the one below, so a percentile read from a bucket is within ~15% of the truth
anywhere from 50 µs to 60 s.

Units: everything here is in **seconds** (the OTel convention for durations);
callers convert to milliseconds at the edge.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

LOWEST_BOUND_S = 50e-6
HIGHEST_BOUND_S = 60.0
BOUNDARY_COUNT = 100


def _geometric_bounds(low: float, high: float, n: int) -> tuple[float, ...]:
    ratio = (high / low) ** (1.0 / (n - 1))
    # Four significant digits keep the numbers readable and byte-identical on every
    # platform, so replicas and control plane compare them with ``==``.
    return tuple(float(f"{low * ratio**i:.4g}") for i in range(n))


# Upper bounds (inclusive, as in OTLP) of the finite buckets; one more bucket above
# the last bound catches everything slower than 60 s.
BOUNDS_S: tuple[float, ...] = _geometric_bounds(LOWEST_BOUND_S, HIGHEST_BOUND_S, BOUNDARY_COUNT)


def bucket_index(value_s: float, bounds: Sequence[float] = BOUNDS_S) -> int:
    """The bucket holding ``value_s``: bucket i covers (bounds[i-1], bounds[i]]."""
    return bisect.bisect_left(bounds, value_s)


def rebin(
    bucket_counts: Sequence[int], explicit_bounds: Sequence[float]
) -> list[int]:
    """Counts on foreign bounds moved onto ``BOUNDS_S``.

    Each foreign bucket's whole count goes to our bucket holding the foreign
    bucket's midpoint (its finite edge when the other edge is infinite). That keeps
    counts integral; the error is at most the foreign bucket's width, which is the
    resolution the sender chose anyway.
    """
    if len(bucket_counts) != len(explicit_bounds) + 1:
        raise ValueError(
            f"bucket_counts must have len(explicit_bounds) + 1 = {len(explicit_bounds) + 1} "
            f"entries, got {len(bucket_counts)}"
        )
    counts = [0] * (len(BOUNDS_S) + 1)
    for i, n in enumerate(bucket_counts):
        if n == 0:
            continue
        lower = explicit_bounds[i - 1] if i > 0 else 0.0
        if i < len(explicit_bounds):
            representative = (max(lower, 0.0) + explicit_bounds[i]) / 2.0
        else:
            # The overflow bucket has no upper edge: just above its lower edge.
            representative = math.nextafter(lower, math.inf) if explicit_bounds else 0.0
        counts[bucket_index(representative)] += n
    return counts


class LatencyHistogram:
    """Bucket counts over ``BOUNDS_S`` plus sum and count; values in seconds.

    Not thread-safe: the aggregator guards it with its own lock.
    """

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (len(BOUNDS_S) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value_s: float) -> None:
        self.counts[bucket_index(value_s)] += 1
        self.sum += value_s
        self.count += 1

    def add_counts(self, bucket_counts: Sequence[int], total_sum: float) -> None:
        """Adds counts already on ``BOUNDS_S`` (use ``rebin`` first otherwise)."""
        if len(bucket_counts) != len(self.counts):
            raise ValueError(
                f"bucket_counts must have {len(self.counts)} entries, got {len(bucket_counts)}"
            )
        counts = self.counts
        for i, n in enumerate(bucket_counts):
            if n:
                counts[i] += n
        self.sum += total_sum
        # The count follows the buckets, not the sender's own figure, so quantiles
        # always rank within what the buckets hold.
        self.count += sum(bucket_counts)

    def merge(self, other: LatencyHistogram) -> None:
        self.add_counts(other.counts, other.sum)

    def quantile(self, q: float) -> float:
        """The q-quantile (0 <= q <= 1) in **seconds**; 0.0 when empty.

        Linear interpolation inside the bucket the rank falls in (the first bucket
        starts at 0). A rank in the overflow bucket (> 60 s) returns the last bound:
        nothing is known about how far above it the values are.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be within [0, 1], got {q}")
        if self.count == 0:
            return 0.0
        rank = q * self.count
        cumulative = 0
        for i, n in enumerate(self.counts):
            if n == 0:
                continue
            if cumulative + n >= rank:
                if i == len(BOUNDS_S):
                    return BOUNDS_S[-1]
                lower = BOUNDS_S[i - 1] if i > 0 else 0.0
                upper = BOUNDS_S[i]
                return lower + (upper - lower) * (rank - cumulative) / n
            cumulative += n
        return BOUNDS_S[-1]
