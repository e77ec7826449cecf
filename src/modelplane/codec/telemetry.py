"""Telemetry records <-> modelplane.v1 telemetry messages (stats, series, alerts)."""

from __future__ import annotations

from modelplane.domain.stats import (
    Alert,
    LatencyPoint,
    LatencySeries,
    VersionQualityRecord,
    VersionStatsRecord,
)
from modelplane.v1 import telemetry_pb2


def version_stats_to_proto(
    record: VersionStatsRecord, quality: VersionQualityRecord | None = None
) -> telemetry_pb2.VersionStats:
    message = telemetry_pb2.VersionStats(
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
        p999_ms=record.p999_ms,
    )
    if quality is not None:
        if quality.drift_psi is not None:
            message.drift_psi = quality.drift_psi
        if quality.drift_ks is not None:
            message.drift_ks = quality.drift_ks
        message.drift_feature = quality.drift_feature
        message.feedback_count = quality.feedback_count
        if quality.accuracy is not None:
            message.accuracy = quality.accuracy
        if quality.mae is not None:
            message.mae = quality.mae
    return message


def version_quality_from_proto(message: telemetry_pb2.VersionStats) -> VersionQualityRecord:
    def optional(name: str) -> float | None:
        return float(getattr(message, name)) if message.HasField(name) else None  # type: ignore[arg-type]

    return VersionQualityRecord(
        endpoint=message.endpoint,
        model=message.model,
        version=message.version,
        drift_psi=optional("drift_psi"),
        drift_ks=optional("drift_ks"),
        drift_feature=message.drift_feature,
        feedback_count=message.feedback_count,
        accuracy=optional("accuracy"),
        mae=optional("mae"),
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
        p999_ms=message.p999_ms,
    )


def stats_response_to_proto(
    records: list[VersionStatsRecord],
    quality: dict[tuple[str, str, int], VersionQualityRecord] | None = None,
) -> telemetry_pb2.GetStatsResponse:
    quality = quality or {}
    return telemetry_pb2.GetStatsResponse(
        stats=[
            version_stats_to_proto(r, quality.get((r.endpoint, r.model, r.version)))
            for r in records
        ]
    )


def stats_response_from_proto(message: telemetry_pb2.GetStatsResponse) -> list[VersionStatsRecord]:
    return [version_stats_from_proto(m) for m in message.stats]


def series_to_proto(series: LatencySeries) -> telemetry_pb2.LatencySeries:
    return telemetry_pb2.LatencySeries(
        endpoint=series.endpoint,
        model=series.model,
        version=series.version,
        step_seconds=series.step_seconds,
        points=[
            telemetry_pb2.LatencyPoint(
                start_unix_s=p.start_s,
                requests=p.requests,
                errors=p.errors,
                p50_ms=p.p50_ms,
                p99_ms=p.p99_ms,
            )
            for p in series.points
        ],
    )


def series_from_proto(message: telemetry_pb2.LatencySeries) -> LatencySeries:
    return LatencySeries(
        endpoint=message.endpoint,
        model=message.model,
        version=message.version,
        step_seconds=message.step_seconds,
        points=tuple(
            LatencyPoint(p.start_unix_s, p.requests, p.errors, p.p50_ms, p.p99_ms)
            for p in message.points
        ),
    )


def alert_to_proto(alert: Alert) -> telemetry_pb2.TelemetryAlert:
    return telemetry_pb2.TelemetryAlert(
        kind=alert.kind,
        endpoint=alert.endpoint,
        model=alert.model,
        version=alert.version,
        message=alert.message,
        observed=alert.observed,
        threshold=alert.threshold,
        exemplar_trace_ids=list(alert.exemplar_trace_ids),
    )


def alert_from_proto(message: telemetry_pb2.TelemetryAlert) -> Alert:
    return Alert(
        kind=message.kind,
        endpoint=message.endpoint,
        model=message.model,
        version=message.version,
        message=message.message,
        observed=message.observed,
        threshold=message.threshold,
        exemplar_trace_ids=tuple(message.exemplar_trace_ids),
    )
