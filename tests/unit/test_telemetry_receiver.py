"""OTLP request decoding of the receiver (servicer methods called directly)."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.histogram import BOUNDS_S
from modelplane.telemetry.receiver import MetricsReceiver, TraceReceiver

T0 = 1_700_000_000.0


def _kv(key: str, value: Any) -> common_pb2.KeyValue:
    if isinstance(value, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def _attrs(version: int = 1, status: str = "OK") -> list[common_pb2.KeyValue]:
    return [_kv("modelplane.endpoint", "e"), _kv("modelplane.model", "m"),
            _kv("modelplane.version", version), _kv("modelplane.status", status)]


def _metrics_request(
    *metrics: metrics_pb2.Metric,
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    return metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[
        metrics_pb2.ResourceMetrics(
            resource={"attributes": [_kv("service.instance.id", "r1")]},
            scope_metrics=[metrics_pb2.ScopeMetrics(metrics=list(metrics))],
        )
    ])


def _histogram(unit: str, bounds: list[float], counts: list[int], total: float,
               temporality: int = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
               status: str = "OK") -> metrics_pb2.Metric:
    point = metrics_pb2.HistogramDataPoint(
        attributes=_attrs(status=status), start_time_unix_nano=int((T0 - 1) * 1e9),
        time_unix_nano=int(T0 * 1e9), count=sum(counts), sum=total,
        bucket_counts=counts, explicit_bounds=bounds,
    )
    return metrics_pb2.Metric(
        name="modelplane.predict.duration", unit=unit,
        histogram=metrics_pb2.Histogram(data_points=[point], aggregation_temporality=temporality),
    )


def test_delta_points_in_our_bounds_and_in_milliseconds() -> None:
    agg = StatsAggregator(clock=lambda: T0)
    receiver = MetricsReceiver(agg, clock=lambda: T0 - 10)
    ours = [0] * (len(BOUNDS_S) + 1)
    ours[40] = 6
    other = metrics_pb2.Metric(name="process.cpu", sum=metrics_pb2.Sum())
    response = receiver.Export(_metrics_request(
        _histogram("s", list(BOUNDS_S), ours, 0.01),
        _histogram("ms", [1.0, 3.0], [0, 4, 0], 8.0, status="NOT_FOUND"),
        other,
    ), None)
    assert not response.HasField("partial_success")
    [record] = agg.query(None, 60)
    assert (record.request_count, record.error_count) == (10, 4)


def test_malformed_points_are_counted_as_rejected() -> None:
    agg = StatsAggregator(clock=lambda: T0)
    receiver = MetricsReceiver(agg)
    response = receiver.Export(_metrics_request(
        _histogram("s", [0.1, 0.2], [1, 2], 0.3),
        _histogram("By", [0.1], [1, 1], 0.3),
        _histogram("s", [0.1], [1, 1], 0.3,
                   temporality=metrics_pb2.AGGREGATION_TEMPORALITY_UNSPECIFIED),
    ), None)
    assert response.partial_success.rejected_data_points == 3
    assert "bucket_counts must have len(explicit_bounds) + 1 = 3 entries, got 2" in (
        response.partial_success.error_message
    )
    assert "unit 'By' is not a duration unit" in response.partial_success.error_message
    assert agg.query(None, 60) == []


def test_cumulative_points_are_differenced() -> None:
    agg = StatsAggregator(clock=lambda: T0)
    receiver = MetricsReceiver(agg, clock=lambda: T0 - 10)  # started before the stream
    cumulative = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    receiver.Export(_metrics_request(_histogram("s", [0.1], [2, 0], 0.1, cumulative)), None)
    receiver.Export(_metrics_request(_histogram("s", [0.1], [5, 1], 0.5, cumulative)), None)
    receiver.Export(_metrics_request(_histogram("s", [0.1], [5, 1], 0.5, cumulative)), None)
    [record] = agg.query(None, 60)
    assert record.request_count == 6


def _span(trace_byte: int, duration_ns: int, with_endpoint: bool = True) -> trace_pb2.Span:
    start = int(T0 * 1e9)
    return trace_pb2.Span(
        trace_id=bytes([trace_byte]) * 16, span_id=b"\x01" * 8, name="x",
        start_time_unix_nano=start, end_time_unix_nano=start + duration_ns,
        attributes=_attrs() if with_endpoint else [_kv("rpc.system", "grpc")],
    )


def test_spans_with_an_endpoint_become_exemplars() -> None:
    agg = StatsAggregator(clock=lambda: T0)
    ours = [0] * (len(BOUNDS_S) + 1)
    ours[10] = 1
    agg.add_histogram_point("e", "m", 1, "OK", ours, BOUNDS_S, 0.0001, 1, T0)
    request = trace_service_pb2.ExportTraceServiceRequest(resource_spans=[
        trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[
            _span(0xAA, 5_000_000), _span(0xBB, 9_000_000), _span(0xCC, 99_000_000, False),
            _span(0xDD, -1),
        ])])
    ])
    response = TraceReceiver(agg).Export(request, None)
    assert response.partial_success.rejected_spans == 1
    [record] = agg.query(None, 60)
    assert record.exemplar_trace_ids == ("bb" * 16, "aa" * 16)
