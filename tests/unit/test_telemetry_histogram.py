"""The shared bucket bounds and the mergeable histogram's quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelplane.telemetry.histogram import BOUNDS_S, LatencyHistogram, bucket_index, rebin


def test_bounds_are_geometric_from_50us_to_60s() -> None:
    assert len(BOUNDS_S) == 100
    assert BOUNDS_S[0] == pytest.approx(50e-6)
    assert BOUNDS_S[-1] == pytest.approx(60.0)
    ratios = np.array(BOUNDS_S[1:]) / np.array(BOUNDS_S[:-1])
    assert np.all(ratios > 1.13)
    assert np.all(ratios < 1.17)


def _bucket_width(value_s: float) -> float:
    i = bucket_index(value_s)
    lower = BOUNDS_S[i - 1] if i > 0 else 0.0
    return BOUNDS_S[i] - lower


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_match_numpy_within_a_bucket(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Latencies around 1 ms with a long tail, as a model server's look.
    values = rng.lognormal(mean=np.log(1e-3), sigma=0.8, size=20_000)
    histogram = LatencyHistogram()
    for v in values:
        histogram.observe(float(v))
    assert histogram.count == len(values)
    assert histogram.sum == pytest.approx(float(values.sum()))
    for q in (0.5, 0.9, 0.99):
        truth = float(np.percentile(values, q * 100))
        assert abs(histogram.quantile(q) - truth) <= _bucket_width(truth), q


def test_merge_equals_observing_everything_in_one() -> None:
    rng = np.random.default_rng(7)
    a_values, b_values = rng.uniform(1e-4, 1e-2, 500), rng.uniform(1e-3, 1.0, 300)
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in a_values:
        a.observe(float(v))
        both.observe(float(v))
    for v in b_values:
        b.observe(float(v))
        both.observe(float(v))
    a.merge(b)
    assert a.counts == both.counts
    assert a.count == 800
    assert a.quantile(0.9) == both.quantile(0.9)


def test_empty_histogram_reads_zero_and_q_is_checked() -> None:
    histogram = LatencyHistogram()
    assert histogram.quantile(0.5) == 0.0
    with pytest.raises(ValueError, match=r"q must be within \[0, 1\], got 1.5"):
        histogram.quantile(1.5)


def test_values_above_the_last_bound_read_as_the_last_bound() -> None:
    histogram = LatencyHistogram()
    histogram.observe(120.0)
    assert histogram.counts[-1] == 1
    assert histogram.quantile(0.99) == BOUNDS_S[-1]


def test_interpolates_linearly_inside_a_bucket() -> None:
    histogram = LatencyHistogram()
    i = bucket_index(0.010)
    counts = [0] * (len(BOUNDS_S) + 1)
    counts[i] = 4
    histogram.add_counts(counts, 0.04)
    lower, upper = BOUNDS_S[i - 1], BOUNDS_S[i]
    assert histogram.quantile(0.5) == pytest.approx(lower + (upper - lower) * 0.5)
    assert histogram.quantile(1.0) == pytest.approx(upper)


def test_rebin_moves_foreign_buckets_by_their_midpoint_and_keeps_the_count() -> None:
    # Prometheus-style bounds in seconds.
    foreign_bounds = [0.005, 0.01, 0.025, 0.05]
    foreign_counts = [3, 5, 7, 11, 2]
    counts = rebin(foreign_counts, foreign_bounds)
    assert sum(counts) == sum(foreign_counts)
    assert counts[bucket_index(0.0025)] == 3
    assert counts[bucket_index(0.0075)] == 5
    assert counts[bucket_index(0.0175)] == 7
    assert counts[bucket_index(0.0375)] == 11
    # The overflow bucket lands just above its finite edge.
    assert counts[bucket_index(math.nextafter(0.05, math.inf))] == 2


def test_rebin_rejects_mismatched_lengths() -> None:
    expected = r"bucket_counts must have len\(explicit_bounds\) \+ 1 = 3 entries, got 2"
    with pytest.raises(ValueError, match=expected):
        rebin([1, 2], [0.1, 0.2])
