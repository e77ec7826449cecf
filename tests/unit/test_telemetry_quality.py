"""Pure logic of the SRE loop: regressions, drift, feedback judging, series, rollout checks."""

from __future__ import annotations

import numpy as np
import pytest

from modelplane.control.rollouts import validate_gates, validate_steps
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.rollouts import RolloutGates
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.drift import BIN_COUNT, DriftTracker, bin_index, ks, psi
from modelplane.telemetry.feedback import (
    CLASS,
    INDEX,
    VALUE,
    PredictionRecord,
    _judge,
    record_from_json,
)
from modelplane.telemetry.histogram import BOUNDS_S, bucket_index
from modelplane.telemetry.io_records import predicted_rows
from modelplane.telemetry.regressions import RegressionPolicy, latency_alerts

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _add(agg: StatsAggregator, version: int, value_s: float, n: int, t: float,
         status: str = "OK") -> None:
    counts = [0] * (len(BOUNDS_S) + 1)
    counts[bucket_index(value_s)] = n
    agg.add_histogram_point("fraud", "m", version, status, counts, BOUNDS_S, value_s * n, n, t)


def test_regressions_against_own_baseline_and_against_stable() -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    for minute in range(10, 50):  # an hour-ish of v1 at 2 ms
        _add(agg, 1, 0.002, 100, T0 - minute * 60)
    _add(agg, 1, 0.006, 100, T0 - 30)   # v1 got 3x slower recently
    _add(agg, 2, 0.020, 50, T0 - 30)    # the canary is 3x slower than v1 in the same window
    agg.add_exemplar("fraud", "m", 2, "ee" * 16, 0.05, T0 - 30)
    alerts = latency_alerts(agg, "fraud", RegressionPolicy(recent_s=300, max_p99_ratio=1.5),
                            clock)
    kinds = {(a.kind, a.version) for a in alerts}
    assert kinds == {("latency_regression_vs_baseline", 1), ("latency_regression_vs_stable", 2)}
    canary = next(a for a in alerts if a.version == 2)
    assert canary.exemplar_trace_ids == ("ee" * 16,)
    assert 2.5 < canary.observed < 4.0
    assert "that of m:1" in canary.message
    # Too few requests: no verdict either way.
    quiet = latency_alerts(agg, "fraud", RegressionPolicy(recent_s=300, min_requests=1000), clock)
    assert quiet == []


def test_one_slow_request_among_few_is_no_regression_but_a_slow_tail_is() -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    for minute in range(10, 50):
        _add(agg, 1, 0.002, 100, T0 - minute * 60)
    # 30 recent requests, one of them 100x slower: their p99 is that one request.
    _add(agg, 1, 0.002, 29, T0 - 30)
    _add(agg, 1, 0.2, 1, T0 - 30)
    policy = RegressionPolicy(recent_s=300, max_p99_ratio=1.5)
    assert latency_alerts(agg, "fraud", policy, clock) == []
    # With 300 recent requests the p99 is estimated, and 3 % slow ones show in it.
    _add(agg, 1, 0.002, 262, T0 - 20)
    _add(agg, 1, 0.2, 8, T0 - 20)
    [alert] = latency_alerts(agg, "fraud", policy, clock)
    assert alert.kind == "latency_regression_vs_baseline"
    assert alert.message.startswith("p99 "), alert.message
    assert "requests in the window" not in alert.message


def test_error_rate_alert() -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    _add(agg, 1, 0.002, 90, T0 - 5)
    _add(agg, 1, 0.002, 10, T0 - 5, status="INTERNAL")
    [alert] = latency_alerts(agg, None, RegressionPolicy(recent_s=60), clock)
    assert alert.kind == "error_rate"
    assert alert.observed == pytest.approx(0.1)


def test_psi_and_ks() -> None:
    same = [10, 20, 30, 40]
    assert psi(same, same) == pytest.approx(0.0)
    assert ks(same, same) == pytest.approx(0.0)
    shifted = [40, 30, 20, 10]
    assert psi(same, shifted) > 0.25
    assert ks(same, shifted) == pytest.approx(0.4)
    assert psi([0, 0], [1, 1]) == 0.0


def _histogram(values: np.ndarray) -> list[int]:
    counts = [0] * BIN_COUNT
    for v in values.tolist():
        counts[bin_index(v)] += 1
    return counts


def test_drift_tracker_baseline_then_recent_window() -> None:
    clock = Clock(T0)
    tracker = DriftTracker(baseline_count=1000, window_s=60, min_recent=200, clock=clock)
    rng = np.random.default_rng(1)
    tracker.add("fraud", "m", 1, "input:x[0]", _histogram(rng.normal(0, 1, 1000)), T0)
    assert tracker.scores() == {}  # nothing after the baseline yet
    tracker.add("fraud", "m", 1, "input:x[0]", _histogram(rng.normal(0, 1, 500)), T0)
    tracker.add("fraud", "m", 1, "input:x[1]", _histogram(rng.normal(0, 1, 1500)), T0)
    calm = tracker.scores()[("fraud", "m", 1)]
    assert calm.psi < 0.1 and calm.ks < 0.1
    clock.now = T0 + 120  # the calm window slides out; shifted data comes in
    tracker.add("fraud", "m", 1, "input:x[1]", _histogram(rng.normal(2, 1, 500)), T0 + 120)
    drifted = tracker.scores()[("fraud", "m", 1)]
    assert drifted.feature == "input:x[1]"
    assert drifted.psi > 1.0 and drifted.ks > 0.5
    with pytest.raises(ValueError, match="bucket_counts must have"):
        tracker.add("fraud", "m", 1, "x", [1, 2], T0)


def _record(kind: str, predicted: tuple[object, ...]) -> PredictionRecord:
    return PredictionRecord("p1", "fraud", "m", 1, kind, predicted, T0)


def test_feedback_judging_by_kind() -> None:
    assert _judge(_record(INDEX, (2,)), 2, 2).correct
    assert not _judge(_record(INDEX, (2,)), 2, 1).correct
    assert _judge(_record(VALUE, (1.5,)), 1.5, 2.0).absolute_error == pytest.approx(0.5)
    assert _judge(_record(CLASS, ("cat",)), "cat", "cat").correct
    with pytest.raises(InvalidArgument, match="regressor; expected a number"):
        _judge(_record(VALUE, (1.5,)), 1.5, "cat")
    with pytest.raises(InvalidArgument, match="class indices; expected class_index, got float"):
        _judge(_record(INDEX, (2,)), 2, 2.0)
    with pytest.raises(InvalidArgument, match="class names; expected class_name, got int"):
        _judge(_record(CLASS, ("cat",)), "cat", 3)


def test_prediction_records_from_outputs_and_json() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    assert predicted_rows({"y": scores}) == (INDEX, [1, 0])
    assert predicted_rows({"y": np.array([[1.5], [2.5]], np.float32)}) == (VALUE, [1.5, 2.5])
    assert predicted_rows({"label": np.array([3, 4], np.int64)}) == (CLASS, [3, 4])
    assert predicted_rows({"y": np.zeros((1, 2, 2), np.float32)}) is None
    assert predicted_rows({}) is None
    record = record_from_json({"id": "a", "model": "m", "version": 2, "kind": "index",
                               "predicted": [1], "t": T0})
    assert (record.version, record.predicted) == (2, (1,))
    with pytest.raises(ValueError, match="missing or bad field"):
        record_from_json({"id": "a"})
    with pytest.raises(ValueError, match="bad kind"):
        record_from_json({"id": "a", "model": "m", "version": 2, "kind": "x",
                          "predicted": [1], "t": T0})


def test_series_steps_and_p999() -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock=clock)
    _add(agg, 1, 0.002, 499, T0 - 125)
    _add(agg, 1, 0.5, 1, T0 - 125)
    _add(agg, 1, 0.002, 10, T0 - 5)
    [series] = agg.series("fraud", 300, 60)
    assert series.step_seconds == 60 and len(series.points) == 5
    assert [p.requests for p in series.points] == [0, 0, 500, 0, 10]
    assert series.points[-1].start_s == T0 - 50  # the last step ends with the open slot
    [record] = agg.query("fraud", 300)
    assert record.p99_ms < 3 and record.p999_ms > 100
    with pytest.raises(InvalidArgument, match="step_seconds must be between 10"):
        agg.series("fraud", 300, 5)


def test_rollout_steps_and_gates_are_checked() -> None:
    assert validate_steps([5, 25, 50, 100]) == (5, 25, 50, 100)
    for bad, message in (
        ([], "at least one weight"),
        ([5, 0, 100], "within 1..100"),
        ([50, 25, 100], "strictly increasing"),
        ([5, 50], "last weight to be 100"),
        ([100], "below 100 before 100"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            validate_steps(bad)
    with pytest.raises(InvalidArgument, match="max_p99_ratio: expected >= 1"):
        validate_gates(RolloutGates(max_p99_ratio=0.5, max_error_rate=0.01))
    with pytest.raises(InvalidArgument, match="max_error_rate: expected within"):
        validate_gates(RolloutGates(max_p99_ratio=1.2, max_error_rate=2))


def test_a_batch_straddling_the_baseline_is_split_in_proportion() -> None:
    tracker = DriftTracker(baseline_count=10, window_s=60, min_recent=1, clock=Clock(T0))
    counts = [0] * BIN_COUNT
    counts[3], counts[40] = 15, 5
    tracker.add("e", "m", 1, "f", counts, T0)
    score = tracker.scores()[("e", "m", 1)]
    # 7.5 / 2.5 rounded by largest remainder: 8 + 2 in the baseline, 7 + 3 recent.
    assert (score.baseline_count, score.recent_count) == (10, 10)
    assert score.psi < 0.1
