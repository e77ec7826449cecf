"""VersionStatsRecord <-> modelplane.v1.VersionStats."""

from __future__ import annotations

from modelplane.domain.stats import VersionStatsRecord
from modelplane.v1 import telemetry_pb2


def version_stats_to_proto(record: VersionStatsRecord) -> telemetry_pb2.VersionStats:
    return telemetry_pb2.VersionStats(
        endpoint=record.endpoint,
        model=record.model,
        version=record.version,
        request_count=record.request_count,
        error_count=record.error_count,
        window_request_count=record.window_request_count,
        window_error_count=record.window_error_count,
        p50_ms=record.p50_ms,
        p90_ms=record.p90_ms,
        p99_ms=record.p99_ms,
        window_seconds=record.window_seconds,
        exemplar_trace_ids=list(record.exemplar_trace_ids),
    )


def version_stats_from_proto(message: telemetry_pb2.VersionStats) -> VersionStatsRecord:
    return VersionStatsRecord(
        endpoint=message.endpoint,
        model=message.model,
        version=message.version,
        request_count=message.request_count,
        error_count=message.error_count,
        window_request_count=message.window_request_count,
        window_error_count=message.window_error_count,
        p50_ms=message.p50_ms,
        p90_ms=message.p90_ms,
        p99_ms=message.p99_ms,
        window_seconds=message.window_seconds,
        exemplar_trace_ids=tuple(message.exemplar_trace_ids),
    )


def stats_response_to_proto(records: list[VersionStatsRecord]) -> telemetry_pb2.GetStatsResponse:
    return telemetry_pb2.GetStatsResponse(stats=[version_stats_to_proto(r) for r in records])


def stats_response_from_proto(message: telemetry_pb2.GetStatsResponse) -> list[VersionStatsRecord]:
    return [version_stats_from_proto(m) for m in message.stats]
