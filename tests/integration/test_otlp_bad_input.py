"""Malformed OTLP sent to the control plane's receiver over real gRPC is rejected
(counted in partial_success) without touching the aggregates, drift or predictions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
import redis
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.telemetry_servicer import TelemetryParts, add_telemetry_services
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.drift import BIN_COUNT, INDEX_BOUNDS, DriftTracker
from modelplane.telemetry.feedback import FeedbackJoiner, PredictionStore
from modelplane.telemetry.histogram import BOUNDS_S
from modelplane.telemetry.names import FEATURE_VALUE, PREDICT_DURATION, PREDICTIONS_EVENT

pytestmark = pytest.mark.integration


def _kv(key: str, value: str | int) -> common_pb2.KeyValue:
    any_value = (common_pb2.AnyValue(int_value=value) if isinstance(value, int)
                 else common_pb2.AnyValue(string_value=value))
    return common_pb2.KeyValue(key=key, value=any_value)


ATTRS = [_kv("modelplane.endpoint", "fraud"), _kv("modelplane.model", "m"),
         _kv("modelplane.version", 1)]


@pytest.fixture()
def receiver(redis_url: str, key_prefix: str) -> Iterator[tuple[grpc.Channel, TelemetryParts]]:
    client = redis.Redis.from_url(redis_url)
    store = PredictionStore(client, key_prefix, ttl_s=60)
    parts = TelemetryParts(StatsAggregator(), drift=DriftTracker(baseline_count=5, min_recent=1),
                           predictions=store, feedback=FeedbackJoiner(store))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         interceptors=[ErrorInterceptor()])
    add_telemetry_services(server, parts)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel, parts
    channel.close()
    server.stop(0).wait()
    client.close()


def _histogram_metric(name: str, bounds: list[float], counts: list[int]) -> metrics_pb2.Metric:
    import time

    return metrics_pb2.Metric(
        name=name, unit="s" if name == PREDICT_DURATION else "",
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
            data_points=[metrics_pb2.HistogramDataPoint(
                attributes=ATTRS + ([_kv("modelplane.feature", "input:x[0]")]
                                    if name == FEATURE_VALUE else []),
                explicit_bounds=bounds, bucket_counts=counts, count=sum(counts),
                sum=0.01 * sum(counts), time_unix_nano=time.time_ns(),
            )],
        ),
    )


def test_malformed_metrics_are_rejected_and_good_ones_kept(
    receiver: tuple[grpc.Channel, TelemetryParts],
) -> None:
    channel, parts = receiver
    stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
    good = [0] * (len(BOUNDS_S) + 1)
    good[10] = 7
    metrics = [
        _histogram_metric(PREDICT_DURATION, list(BOUNDS_S), good),
        _histogram_metric(PREDICT_DURATION, list(BOUNDS_S), [1, 2, 3]),  # wrong length
        _histogram_metric(FEATURE_VALUE, [0.5, 1.5], [1, 2, 3]),  # not the drift bins
        _histogram_metric(FEATURE_VALUE, list(INDEX_BOUNDS), [1] * BIN_COUNT),
    ]
    request = metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[
        metrics_pb2.ResourceMetrics(scope_metrics=[metrics_pb2.ScopeMetrics(metrics=metrics)])
    ])
    response = stub.Export(request, timeout=5)
    assert response.partial_success.rejected_data_points == 2
    assert "bucket_counts must have" in response.partial_success.error_message
    assert "drift index bounds" in response.partial_success.error_message
    [record] = parts.aggregator.query("fraud", 60)
    assert record.window_request_count == 7
    assert parts.drift is not None
    [(key, score)] = parts.drift.scores().items()
    assert key == ("fraud", "m", 1) and score.feature == "input:x[0]"


def test_malformed_prediction_logs_are_rejected_and_good_ones_stored(
    receiver: tuple[grpc.Channel, TelemetryParts],
) -> None:
    channel, parts = receiver
    stub = logs_service_pb2_grpc.LogsServiceStub(channel)  # type: ignore[no-untyped-call]
    good = [{"id": "good1", "endpoint": "fraud", "model": "m", "version": 1, "kind": "value",
             "predicted": [2.5], "t": 1.0}]
    records = [
        logs_pb2.LogRecord(event_name=PREDICTIONS_EVENT,
                           body=common_pb2.AnyValue(bytes_value=json.dumps(good).encode())),
        logs_pb2.LogRecord(event_name=PREDICTIONS_EVENT,
                           body=common_pb2.AnyValue(bytes_value=b"{not json")),
        logs_pb2.LogRecord(event_name=PREDICTIONS_EVENT,
                           body=common_pb2.AnyValue(string_value='[{"id": "x"}]')),
        logs_pb2.LogRecord(event_name="something.else",
                           body=common_pb2.AnyValue(string_value="ignored")),
    ]
    request = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[
        logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=records)])
    ])
    response = stub.Export(request, timeout=5)
    assert response.partial_success.rejected_log_records == 2
    assert parts.predictions is not None
    assert parts.predictions.get("good1") is not None
    assert parts.predictions.get("x") is None
    assert parts.aggregator.query(None, 60) == []
