"""`modelplane stats` shows each version's drift and accuracy (or MAE) beside its latency."""

from __future__ import annotations

from modelplane.cli.output import stats_table
from modelplane.v1 import telemetry_pb2


def test_stats_table_shows_drift_and_accuracy_or_mae() -> None:
    classifier = telemetry_pb2.VersionStats(
        endpoint="fraud", model="m", version=1, request_count=100, window_seconds=300,
        drift_psi=1.23456, drift_feature="input:x[0]", feedback_count=30, accuracy=0.7,
    )
    regressor = telemetry_pb2.VersionStats(
        endpoint="fraud", model="m", version=2, request_count=40, window_seconds=300,
        feedback_count=10, mae=0.5,
    )
    quiet = telemetry_pb2.VersionStats(endpoint="fraud", model="m", version=3)
    header, v1, v2, v3 = stats_table([classifier, regressor, quiet]).splitlines()
    assert header.split()[-3:] == ["DRIFT", "PSI", "ACCURACY/MAE"]
    assert v1.split()[-4:] == ["1.235", "70.0%", "(30", "labels)"]
    assert v2.split()[-5:] == ["-", "MAE", "0.5", "(10", "labels)"]
    assert v3.split()[-2:] == ["-", "-"]
