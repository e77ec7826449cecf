"""VersionStatsRecord <-> VersionStats round trip."""

from __future__ import annotations

from modelplane.codec.telemetry import (
    stats_response_from_proto,
    stats_response_to_proto,
    version_stats_from_proto,
    version_stats_to_proto,
)
from modelplane.domain.stats import VersionStatsRecord

RECORD = VersionStatsRecord(
    endpoint="fraud", model="fraud-model", version=3, request_count=1000, error_count=7,
    window_request_count=120, window_error_count=2, p50_ms=0.5, p90_ms=1.25, p99_ms=9.75,
    window_seconds=60, exemplar_trace_ids=("a" * 32, "b" * 32),
)


def test_round_trip() -> None:
    message = version_stats_to_proto(RECORD)
    assert message.p99_ms == 9.75
    assert list(message.exemplar_trace_ids) == ["a" * 32, "b" * 32]
    assert version_stats_from_proto(message) == RECORD


def test_response_round_trip() -> None:
    response = stats_response_to_proto([RECORD, RECORD])
    assert len(response.stats) == 2
    assert stats_response_from_proto(response) == [RECORD, RECORD]


def test_quality_series_and_alert_round_trips() -> None:
    from modelplane.codec.telemetry import (
        alert_from_proto,
        alert_to_proto,
        series_from_proto,
        series_to_proto,
        version_quality_from_proto,
    )
    from modelplane.domain.stats import Alert, LatencyPoint, LatencySeries, VersionQualityRecord

    quality = VersionQualityRecord("fraud", "fraud-model", 3, drift_psi=0.3, drift_ks=0.2,
                                   drift_feature="input:x[1]", feedback_count=4, accuracy=0.75)
    message = version_stats_to_proto(RECORD, quality)
    assert version_stats_from_proto(message) == RECORD
    assert version_quality_from_proto(message) == quality
    assert not message.HasField("mae")
    series = LatencySeries("fraud", "m", 2, 60, (LatencyPoint(1_800_000_000, 5, 1, 0.5, 2.0),))
    assert series_from_proto(series_to_proto(series)) == series
    alert = Alert("drift", "fraud", "m", 2, "PSI 0.4", 0.4, 0.25, ("ab" * 16,))
    assert alert_from_proto(alert_to_proto(alert)) == alert
