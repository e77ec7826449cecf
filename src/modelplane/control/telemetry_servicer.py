"""TelemetryService: figures the receiver gathered (stats, series, alerts) and feedback."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from modelplane.codec.telemetry import alert_to_proto, series_to_proto, stats_response_to_proto
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.stats import VersionQualityRecord
from modelplane.telemetry.aggregator import HORIZON_SECONDS, SLOT_SECONDS, StatsAggregator
from modelplane.telemetry.alerts import AccuracyPolicy, current_alerts
from modelplane.telemetry.drift import DriftTracker
from modelplane.telemetry.feedback import FeedbackJoiner, Label, PredictionStore
from modelplane.telemetry.receiver import add_otlp_receivers
from modelplane.telemetry.regressions import RegressionPolicy
from modelplane.v1 import telemetry_pb2, telemetry_pb2_grpc

DEFAULT_WINDOW_SECONDS = 60
DEFAULT_SERIES_WINDOW_SECONDS = 3600
DEFAULT_ALERT_WINDOW_SECONDS = 300


def window_seconds(requested: int, default: int = DEFAULT_WINDOW_SECONDS) -> int:
    """The window a request asks for: 0 means the default; past the horizon is refused."""
    if requested == 0:
        return default
    if requested > HORIZON_SECONDS:
        raise InvalidArgument(
            f"window_seconds must be between 1 and {HORIZON_SECONDS} "
            f"(0 for {default}), got {requested}"
        )
    return requested


@dataclass
class TelemetryParts:
    """What the telemetry services read; drift and feedback are optional."""

    aggregator: StatsAggregator
    drift: DriftTracker | None = None
    predictions: PredictionStore | None = None
    feedback: FeedbackJoiner | None = None
    policy: RegressionPolicy = field(default_factory=RegressionPolicy)
    clock: Callable[[], float] = time.time
    accuracy: AccuracyPolicy = field(default_factory=AccuracyPolicy)


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServiceServicer):
    def __init__(self, parts: TelemetryParts | StatsAggregator) -> None:
        self._parts = parts if isinstance(parts, TelemetryParts) else TelemetryParts(parts)

    def GetStats(
        self, request: telemetry_pb2.GetStatsRequest, context: grpc.ServicerContext
    ) -> telemetry_pb2.GetStatsResponse:
        window = window_seconds(request.window_seconds)
        records = self._parts.aggregator.query(request.endpoint or None, window)
        return stats_response_to_proto(records, self._quality(window))

    def _quality(self, window: int) -> dict[tuple[str, str, int], VersionQualityRecord]:
        parts = self._parts
        quality: dict[tuple[str, str, int], VersionQualityRecord] = {}
        drift = parts.drift.scores() if parts.drift is not None else {}
        now = parts.clock()
        joined = parts.feedback.quality(now - window, now) if parts.feedback is not None else {}
        for key in set(drift) | set(joined):
            score = drift.get(key)
            count, accuracy, mae = joined.get(key, (0, None, None))
            quality[key] = VersionQualityRecord(
                endpoint=key[0],
                model=key[1],
                version=key[2],
                drift_psi=score.psi if score else None,
                drift_ks=score.ks if score else None,
                drift_feature=score.feature if score else "",
                feedback_count=count,
                accuracy=accuracy,
                mae=mae,
            )
        return quality

    def GetLatencySeries(
        self, request: telemetry_pb2.GetLatencySeriesRequest, context: grpc.ServicerContext
    ) -> telemetry_pb2.GetLatencySeriesResponse:
        window = window_seconds(request.window_seconds, DEFAULT_SERIES_WINDOW_SECONDS)
        step = request.step_seconds or max(window // 30, SLOT_SECONDS)
        series = self._parts.aggregator.series(request.endpoint or None, window, step)
        return telemetry_pb2.GetLatencySeriesResponse(series=[series_to_proto(s) for s in series])

    def ListAlerts(
        self, request: telemetry_pb2.ListAlertsRequest, context: grpc.ServicerContext
    ) -> telemetry_pb2.ListAlertsResponse:
        window = window_seconds(request.window_seconds, DEFAULT_ALERT_WINDOW_SECONDS)
        if window < SLOT_SECONDS or window >= HORIZON_SECONDS:
            raise InvalidArgument(
                f"window_seconds must be between {SLOT_SECONDS} and {HORIZON_SECONDS - 1} "
                f"for alerts (0 for {DEFAULT_ALERT_WINDOW_SECONDS}), got {window}"
            )
        parts = self._parts
        policy = RegressionPolicy(
            recent_s=window,
            max_p99_ratio=parts.policy.max_p99_ratio,
            max_error_rate=parts.policy.max_error_rate,
            min_requests=parts.policy.min_requests,
        )
        alerts = current_alerts(
            parts.aggregator, policy, parts.clock,
            drift=parts.drift, feedback=parts.feedback, accuracy=parts.accuracy,
            endpoint=request.endpoint or None,
        )
        return telemetry_pb2.ListAlertsResponse(alerts=[alert_to_proto(a) for a in alerts])

    def Feedback(
        self, request: telemetry_pb2.FeedbackRequest, context: grpc.ServicerContext
    ) -> telemetry_pb2.FeedbackResponse:
        joiner = self._parts.feedback
        if joiner is None:
            raise InvalidArgument("feedback is not enabled on this control plane")
        kind = request.WhichOneof("label")
        label: Label | None = None
        if kind == "class_index":
            label = request.class_index
        elif kind == "class_name":
            label = request.class_name
        elif kind == "value":
            label = request.value
        outcome = joiner.feedback(request.prediction_id, label, request.row)
        record = outcome.record
        return telemetry_pb2.FeedbackResponse(
            endpoint=record.endpoint,
            model=record.model,
            version=record.version,
            correct=outcome.correct,
            absolute_error=outcome.absolute_error,
        )


def add_telemetry_services(server: grpc.Server, parts: TelemetryParts | StatsAggregator) -> None:
    """The telemetry queries plus the OTLP receivers feeding them, on one server."""
    if not isinstance(parts, TelemetryParts):
        parts = TelemetryParts(parts)
    telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(TelemetryServicer(parts), server)
    add_otlp_receivers(server, parts.aggregator, parts.drift, parts.predictions)
