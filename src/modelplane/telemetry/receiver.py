"""The control plane's OTLP/gRPC receiver: the stock collector services, fed into
the ``StatsAggregator``.

Replicas export with the stock OTel exporters, so the same telemetry can go here and
to any collector at once. Only what the aggregator needs is read:

- metrics: the ``modelplane.predict.duration`` histogram (DELTA as is, CUMULATIVE
  differenced per stream), keyed by its endpoint / model / version / status
  attributes;
- traces: spans carrying ``modelplane.endpoint``, offered as exemplars (the slowest
  requests' trace ids).

- metrics: the ``modelplane.feature.value`` histograms, fed to the drift tracker;
- logs: records named ``modelplane.predictions`` (a JSON list of prediction
  records in the body), stored for feedback.

Everything else is accepted and ignored, as a collector with no pipeline for it would.
Malformed points are counted in ``partial_success`` rather than failing the batch.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.cumulative import CumulativeToDelta
from modelplane.telemetry.drift import INDEX_BOUNDS, DriftTracker
from modelplane.telemetry.feedback import PredictionStore, checked_record
from modelplane.telemetry.names import (
    ATTR_ENDPOINT,
    ATTR_FEATURE,
    ATTR_MODEL,
    ATTR_STATUS,
    ATTR_VERSION,
    FEATURE_VALUE,
    PREDICT_DURATION,
    PREDICTIONS_EVENT,
)

log = logging.getLogger(__name__)

_DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
# Seconds per unit for the duration units a sender may reasonably pick (UCUM codes).
_UNIT_SCALE = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

AttrKey = tuple[tuple[str, Any], ...]


def _value(any_value: common_pb2.AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    # Arrays and maps are kept as their text form: hashable, and good enough to
    # tell streams apart, which is all they are used for here.
    return value if kind in ("string_value", "bool_value", "int_value", "double_value",
                             "bytes_value") else str(value)


def attributes(key_values: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return 0


class MetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(
        self,
        aggregator: StatsAggregator,
        clock: Callable[[], float] = time.time,
        drift: DriftTracker | None = None,
    ) -> None:
        self._aggregator = aggregator
        self._drift = drift
        # The converter's state is shared by every export thread.
        self._lock = threading.Lock()
        self._cumulative = CumulativeToDelta(clock)

    def Export(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        rejected = 0
        errors: list[str] = []
        for resource_metrics in request.resource_metrics:
            resource_key: AttrKey | None = None
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == FEATURE_VALUE:
                        bad, error = self._take_feature(metric)
                        rejected += bad
                        if error:
                            errors.append(error)
                        continue
                    if metric.name != PREDICT_DURATION:
                        continue
                    if resource_key is None:
                        resource_key = tuple(
                            sorted(attributes(resource_metrics.resource.attributes).items())
                        )
                    bad, error = self._take_metric(resource_key, metric)
                    rejected += bad
                    if error:
                        errors.append(error)
        response = metrics_service_pb2.ExportMetricsServiceResponse()
        if rejected:
            response.partial_success.rejected_data_points = rejected
            response.partial_success.error_message = "; ".join(errors[:5])
        return response

    def _take_feature(self, metric: metrics_pb2.Metric) -> tuple[int, str]:
        """Feeds sampled feature histograms (DELTA, bin indices) to the drift tracker."""
        if self._drift is None or metric.WhichOneof("data") != "histogram":
            return 0, ""
        points = metric.histogram.data_points
        if metric.histogram.aggregation_temporality != _DELTA:
            return len(points), f"{metric.name}: expected DELTA temporality"
        rejected = 0
        error = ""
        for point in points:
            if tuple(point.explicit_bounds) != INDEX_BOUNDS:
                rejected += 1
                error = f"{metric.name}: explicit_bounds must be the drift index bounds"
                continue
            attrs = attributes(point.attributes)
            try:
                self._drift.add(
                    str(attrs.get(ATTR_ENDPOINT) or ""),
                    str(attrs.get(ATTR_MODEL) or ""),
                    _as_int(attrs.get(ATTR_VERSION)),
                    str(attrs.get(ATTR_FEATURE) or ""),
                    list(point.bucket_counts),
                    point.time_unix_nano / 1e9,
                )
            except ValueError as exc:
                rejected += 1
                error = f"{metric.name}: {exc}"
        return rejected, error

    def _take_metric(self, resource_key: AttrKey, metric: metrics_pb2.Metric) -> tuple[int, str]:
        """Feeds one metric's points; returns (points rejected, why)."""
        if metric.WhichOneof("data") != "histogram":
            return 0, ""
        points = metric.histogram.data_points
        scale = _UNIT_SCALE.get(metric.unit)
        if scale is None:
            return len(points), f"{metric.name}: unit {metric.unit!r} is not a duration unit"
        temporality = metric.histogram.aggregation_temporality
        if temporality not in (_DELTA, _CUMULATIVE):
            return len(points), f"{metric.name}: aggregation_temporality must be set"
        rejected = 0
        error = ""
        for point in points:
            try:
                self._take_point(resource_key, point, temporality, scale)
            except ValueError as exc:
                rejected += 1
                error = f"{metric.name}: {exc}"
        return rejected, error

    def _take_point(
        self,
        resource_key: AttrKey,
        point: metrics_pb2.HistogramDataPoint,
        temporality: int,
        scale: float,
    ) -> None:
        attrs = attributes(point.attributes)
        bounds: list[float] | Any = point.explicit_bounds
        bucket_counts: list[int] | Any = point.bucket_counts
        if bucket_counts and len(bucket_counts) != len(bounds) + 1:
            raise ValueError(
                f"bucket_counts must have len(explicit_bounds) + 1 = {len(bounds) + 1} "
                f"entries, got {len(bucket_counts)}"
            )
        total_sum = point.sum
        count = point.count
        if temporality == _CUMULATIVE:
            stream = (resource_key, tuple(sorted(attrs.items())), point.start_time_unix_nano)
            with self._lock:
                delta = self._cumulative.convert(
                    stream, point.start_time_unix_nano, bounds, bucket_counts, total_sum, count
                )
            if delta is None:
                return
            bucket_counts, total_sum, count = delta.bucket_counts, delta.total_sum, delta.count
        if scale != 1.0:
            bounds = [b * scale for b in bounds]
            total_sum *= scale
        self._aggregator.add_histogram_point(
            endpoint=str(attrs.get(ATTR_ENDPOINT) or ""),
            model=str(attrs.get(ATTR_MODEL) or ""),
            version=_as_int(attrs.get(ATTR_VERSION)),
            status=str(attrs.get(ATTR_STATUS) or "OK"),
            bucket_counts=bucket_counts,
            explicit_bounds=bounds,
            total_sum=total_sum,
            count=count,
            time_s=point.time_unix_nano / 1e9,
        )


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, aggregator: StatsAggregator) -> None:
        self._aggregator = aggregator

    def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        rejected = 0
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    # Cheap pre-check before decoding every attribute of every span.
                    if not any(kv.key == ATTR_ENDPOINT for kv in span.attributes):
                        continue
                    start_ns, end_ns = span.start_time_unix_nano, span.end_time_unix_nano
                    if len(span.trace_id) != 16 or end_ns < start_ns:
                        rejected += 1
                        continue
                    attrs = attributes(span.attributes)
                    self._aggregator.add_exemplar(
                        endpoint=str(attrs.get(ATTR_ENDPOINT) or ""),
                        model=str(attrs.get(ATTR_MODEL) or ""),
                        version=_as_int(attrs.get(ATTR_VERSION)),
                        trace_id_hex=span.trace_id.hex(),
                        duration_s=(end_ns - start_ns) / 1e9,
                        time_s=end_ns / 1e9,
                    )
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = (
                "spans need a 16-byte trace_id and end_time_unix_nano >= start_time_unix_nano"
            )
        return response


class LogsReceiver(logs_service_pb2_grpc.LogsServiceServicer):
    """Stores the prediction records replicas ship, for feedback to join later."""

    def __init__(self, predictions: PredictionStore | None) -> None:
        self._predictions = predictions

    def Export(
        self,
        request: logs_service_pb2.ExportLogsServiceRequest,
        context: grpc.ServicerContext,
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        rejected = 0
        error = ""
        records: list[tuple[str, str]] = []
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for log_record in scope_logs.log_records:
                    if log_record.event_name != PREDICTIONS_EVENT:
                        continue
                    try:
                        body = log_record.body.bytes_value or log_record.body.string_value
                        batch = json.loads(body)
                        if not isinstance(batch, list):
                            raise ValueError("body must be a JSON list of prediction records")
                        # All or nothing per log record: a bad entry rejects its batch.
                        records.extend([checked_record(item) for item in batch])
                    except (ValueError, TypeError, AttributeError) as exc:
                        rejected += 1
                        error = f"{PREDICTIONS_EVENT}: {exc}"[:300]
        if records and self._predictions is not None:
            self._predictions.put_texts(records)
        response = logs_service_pb2.ExportLogsServiceResponse()
        if rejected:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = error
        return response


def add_otlp_receivers(
    server: grpc.Server,
    aggregator: StatsAggregator,
    drift: DriftTracker | None = None,
    predictions: PredictionStore | None = None,
) -> None:
    """Serves OTLP traces, metrics and logs on ``server``, feeding ``aggregator``
    (and the drift tracker and prediction store when given)."""
    # The generated registration functions carry no annotations.
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        MetricsReceiver(aggregator, drift=drift), server
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        LogsReceiver(predictions), server
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        TraceReceiver(aggregator), server
    )
