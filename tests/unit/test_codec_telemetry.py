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
