"""Windows, totals, errors and exemplars of the stats aggregator, on a fake clock."""

from __future__ import annotations

import pytest

from modelplane.domain.errors import InvalidArgument
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.histogram import BOUNDS_S, bucket_index


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


T0 = 1_700_000_000.0


def _counts(value_s: float, n: int) -> list[int]:
    counts = [0] * (len(BOUNDS_S) + 1)
    counts[bucket_index(value_s)] = n
    return counts


def _add(agg: StatsAggregator, value_s: float, n: int, time_s: float, status: str = "OK",
         endpoint: str = "fraud", version: int = 1) -> None:
    agg.add_histogram_point(endpoint, "m", version, status, _counts(value_s, n), BOUNDS_S,
                            value_s * n, n, time_s)


def test_window_counts_and_totals_diverge_as_time_passes() -> None:
    clock = FakeClock(T0)
    agg = StatsAggregator(clock=clock)
    _add(agg, 0.002, 100, T0 - 5)
    _add(agg, 0.2, 10, T0 - 5, status="INTERNAL")
    [record] = agg.query(None, 60)
    assert (record.request_count, record.error_count) == (110, 10)
    assert (record.window_request_count, record.window_error_count) == (110, 10)
    assert record.window_seconds == 60
    assert 1.5 < record.p50_ms < 2.5
    assert 150 < record.p99_ms < 250
    assert record.p50_ms <= record.p90_ms <= record.p99_ms

    clock.now = T0 + 120
    _add(agg, 0.010, 5, T0 + 119)
    [record] = agg.query(None, 60)
    assert (record.request_count, record.error_count) == (115, 10)
    assert (record.window_request_count, record.window_error_count) == (5, 0)
    assert 8.5 < record.p50_ms < 11.5
    # A wider window still sees the older points.
    [wide] = agg.query(None, 600)
    assert wide.window_request_count == 115


def test_points_older_than_an_hour_count_only_in_totals() -> None:
    agg = StatsAggregator(clock=FakeClock(T0))
    _add(agg, 0.002, 7, T0 - 3700)
    [record] = agg.query(None, 3600)
    assert record.request_count == 7
    assert record.window_request_count == 0
    assert record.p50_ms == 0.0


def test_a_slot_reused_after_an_hour_forgets_the_old_data() -> None:
    clock = FakeClock(T0)
    agg = StatsAggregator(clock=clock)
    _add(agg, 0.002, 3, T0)
    clock.now = T0 + 3610  # the ring index of T0 comes round again
    _add(agg, 0.004, 2, T0 + 3610)
    [record] = agg.query(None, 3600)
    assert record.window_request_count == 2
    assert record.request_count == 5


def test_future_points_land_in_the_current_window() -> None:
    agg = StatsAggregator(clock=FakeClock(T0))
    _add(agg, 0.002, 4, T0 + 30)  # a replica clock ahead of ours
    [record] = agg.query(None, 10)
    assert record.window_request_count == 4


def test_endpoint_filter_and_ordering() -> None:
    agg = StatsAggregator(clock=FakeClock(T0))
    _add(agg, 0.002, 1, T0, endpoint="b", version=2)
    _add(agg, 0.002, 1, T0, endpoint="b", version=1)
    _add(agg, 0.002, 1, T0, endpoint="a", version=3)
    assert [(r.endpoint, r.version) for r in agg.query(None, 60)] == [("a", 3), ("b", 1), ("b", 2)]
    assert [(r.endpoint, r.version) for r in agg.query("b", 60)] == [("b", 1), ("b", 2)]
    assert agg.query("nope", 60) == []


def test_exemplars_keep_the_slowest_in_the_window() -> None:
    clock = FakeClock(T0)
    agg = StatsAggregator(clock=clock, exemplars_per_key=3)
    _add(agg, 0.002, 10, T0)
    for i in range(10):
        agg.add_exemplar("fraud", "m", 1, f"{i:032x}", duration_s=i / 100, time_s=T0 - i)
    [record] = agg.query(None, 60)
    assert record.exemplar_trace_ids == (f"{9:032x}", f"{8:032x}", f"{7:032x}")
    # An old slow one leaves the window; younger ones take its place.
    agg.add_exemplar("fraud", "m", 1, "f" * 32, duration_s=5.0, time_s=T0 - 500)
    [record] = agg.query(None, 60)
    assert "f" * 32 not in record.exemplar_trace_ids
    [wide] = agg.query(None, 600)
    assert wide.exemplar_trace_ids[0] == "f" * 32


def test_foreign_bounds_are_rebinned() -> None:
    agg = StatsAggregator(clock=FakeClock(T0))
    agg.add_histogram_point("e", "m", 1, "OK", [0, 10, 0], [0.001, 0.003], 0.02, 10, T0)
    [record] = agg.query(None, 60)
    assert record.window_request_count == 10
    assert 1.5 < record.p50_ms < 2.5


def test_a_point_without_buckets_is_filed_at_its_mean() -> None:
    agg = StatsAggregator(clock=FakeClock(T0))
    agg.add_histogram_point("e", "m", 1, "OK", [], [], 0.05, 10, T0)
    [record] = agg.query(None, 60)
    assert record.request_count == 10
    assert 4 < record.p50_ms < 6


def test_bucket_count_length_is_checked() -> None:
    agg = StatsAggregator(clock=FakeClock(T0))
    with pytest.raises(ValueError, match="bucket_counts must have 101 entries, got 3"):
        agg.add_histogram_point("e", "m", 1, "OK", [1, 2, 3], BOUNDS_S, 0.1, 6, T0)


@pytest.mark.parametrize("window", [0, 3601])
def test_window_bounds(window: int) -> None:
    agg = StatsAggregator(clock=FakeClock(T0))
    expected = f"window_seconds must be between 1 and 3600, got {window}"
    with pytest.raises(InvalidArgument, match=expected):
        agg.query(None, window)
