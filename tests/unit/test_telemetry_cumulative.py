"""Cumulative OTLP histogram points to deltas, per stream."""

from __future__ import annotations

from modelplane.telemetry.cumulative import CumulativeToDelta, HistogramDelta


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


T0 = 1_700_000_000.0
BOUNDS = [0.01, 0.1]
STARTED_AFTER = int((T0 + 1) * 1e9)
STARTED_BEFORE = int((T0 - 100) * 1e9)


def test_stream_started_after_us_counts_its_first_point_then_differences() -> None:
    conv = CumulativeToDelta(FakeClock(T0))
    first = conv.convert("s", STARTED_AFTER, BOUNDS, [1, 2, 0], 0.3, 3)
    assert first == HistogramDelta((1, 2, 0), 0.3, 3)
    second = conv.convert("s", STARTED_AFTER, BOUNDS, [4, 2, 1], 0.8, 7)
    assert second is not None
    assert second.bucket_counts == (3, 0, 1)
    assert second.count == 4
    assert abs(second.total_sum - 0.5) < 1e-12
    assert conv.convert("s", STARTED_AFTER, BOUNDS, [4, 2, 1], 0.8, 7) is None


def test_stream_older_than_us_only_sets_the_baseline() -> None:
    conv = CumulativeToDelta(FakeClock(T0))
    assert conv.convert("s", STARTED_BEFORE, BOUNDS, [100, 50, 5], 9.0, 155) is None
    delta = conv.convert("s", STARTED_BEFORE, BOUNDS, [101, 50, 5], 9.001, 156)
    assert delta is not None
    assert (delta.bucket_counts, delta.count) == ((1, 0, 0), 1)


def test_a_reset_without_a_new_start_time_counts_in_full() -> None:
    conv = CumulativeToDelta(FakeClock(T0))
    conv.convert("s", STARTED_AFTER, BOUNDS, [5, 5, 5], 1.0, 15)
    delta = conv.convert("s", STARTED_AFTER, BOUNDS, [1, 0, 0], 0.001, 1)
    assert delta == HistogramDelta((1, 0, 0), 0.001, 1)


def test_changed_bounds_count_in_full() -> None:
    conv = CumulativeToDelta(FakeClock(T0))
    conv.convert("s", STARTED_AFTER, BOUNDS, [5, 5, 5], 1.0, 15)
    delta = conv.convert("s", STARTED_AFTER, [0.5], [16, 1], 2.0, 17)
    assert delta == HistogramDelta((16, 1), 2.0, 17)


def test_streams_are_independent() -> None:
    conv = CumulativeToDelta(FakeClock(T0))
    conv.convert(("r1", "a"), STARTED_AFTER, BOUNDS, [1, 0, 0], 0.001, 1)
    delta_b = conv.convert(("r1", "b"), STARTED_AFTER, BOUNDS, [2, 0, 0], 0.002, 2)
    assert delta_b is not None and delta_b.count == 2
    delta_a = conv.convert(("r1", "a"), STARTED_AFTER, BOUNDS, [3, 0, 0], 0.003, 3)
    assert delta_a is not None and delta_a.count == 2


def test_stale_streams_are_forgotten() -> None:
    clock = FakeClock(T0)
    conv = CumulativeToDelta(clock)
    conv.convert("old", STARTED_AFTER, BOUNDS, [1, 0, 0], 0.001, 1)
    assert len(conv) == 1
    clock.now = T0 + 3700
    conv.convert("new", int(clock.now * 1e9), BOUNDS, [1, 0, 0], 0.001, 1)
    assert len(conv) == 1
