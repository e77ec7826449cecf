"""Replica telemetry -> real OTLP/gRPC -> the control plane's receiver -> GetStats.

A real sync grpc.server carries GetStats and the OTLP collector services; a
DataPlaneTelemetry exports to it with the stock exporters. Durations are injected
through the telemetry's clock so the percentiles are known without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.telemetry_servicer import add_telemetry_services
from modelplane.domain.errors import InvalidArgument, NotFound
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.data_plane import DataPlaneTelemetry
from modelplane.telemetry.histogram import BOUNDS_S, bucket_index
from modelplane.v1 import telemetry_pb2, telemetry_pb2_grpc
from tests.integration.otlp_collectors import running_collector

pytestmark = pytest.mark.integration

CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE_ID}-00f067aa0ba902b7-01"


@dataclass
class ControlPlane:
    address: str
    stub: telemetry_pb2_grpc.TelemetryServiceStub
    aggregator: StatsAggregator


@pytest.fixture()
def control_plane() -> Iterator[ControlPlane]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[ErrorInterceptor()]
    )
    aggregator = StatsAggregator()
    add_telemetry_services(server, aggregator)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ControlPlane(
            f"127.0.0.1:{port}", telemetry_pb2_grpc.TelemetryServiceStub(channel), aggregator
        )
    finally:
        channel.close()
        server.stop(0).wait()


class ScriptedClock:
    """Real wall time at a request's start; start + the scripted duration at its end."""

    def __init__(self) -> None:
        self.duration_s = 0.0
        self._start_ns: int | None = None

    def __call__(self) -> int:
        if self._start_ns is None:
            self._start_ns = time.time_ns()
            return self._start_ns
        end_ns = self._start_ns + int(self.duration_s * 1e9)
        self._start_ns = None
        return end_ns


def _bucket_width_ms(value_s: float) -> float:
    i = bucket_index(value_s)
    return (BOUNDS_S[i] - (BOUNDS_S[i - 1] if i > 0 else 0.0)) * 1000


def _stats_by_key(
    stub: telemetry_pb2_grpc.TelemetryServiceStub, **request: object
) -> dict[tuple[str, str, int], telemetry_pb2.VersionStats]:
    response = stub.GetStats(telemetry_pb2.GetStatsRequest(**request), timeout=5)  # type: ignore[arg-type]
    return {(s.endpoint, s.model, s.version): s for s in response.stats}


def test_predictions_reach_get_stats_with_counts_percentiles_and_exemplars(
    control_plane: ControlPlane,
) -> None:
    clock = ScriptedClock()
    telemetry = DataPlaneTelemetry(
        [control_plane.address], "modelplane-replica", "replica-1",
        metric_export_interval_ms=200, clock_ns=clock, slow_spans_per_interval=3,
    )
    rng = np.random.default_rng(42)
    v1_durations = rng.uniform(0.001, 0.003, 200)
    v2_durations = rng.uniform(0.005, 0.015, 100)
    untraced = (("user-agent", "grpc-python/1.85"),)
    try:
        for d in v1_durations:
            clock.duration_s = float(d)
            with telemetry.observe_predict(untraced, endpoint="fraud") as obs:
                obs.answered("fraud", "fraud-model", 1, f"p-{d}")
        for d in v2_durations:
            clock.duration_s = float(d)
            with telemetry.observe_predict(untraced, endpoint="fraud") as obs:
                obs.answered("fraud", "fraud-model", 2, f"p-{d}")
        # Failures after routing: filed under the version that failed.
        for _ in range(20):
            clock.duration_s = 0.004
            with pytest.raises(NotFound), telemetry.observe_predict(untraced, "fraud") as obs:
                obs.answered("fraud", "fraud-model", 2, "p-failed")
                raise NotFound("tensor 'x' not found")
        for _ in range(3):
            clock.duration_s = 0.002
            with pytest.raises(RuntimeError), telemetry.observe_predict(untraced, "fraud") as obs:
                obs.answered("fraud", "fraud-model", 1, "p-bug")
                raise RuntimeError("a bug")
        # Failures before routing: filed under what was asked, model "" and version 0.
        for _ in range(5):
            clock.duration_s = 0.0002
            with pytest.raises(InvalidArgument), telemetry.observe_predict(untraced, "fraud"):
                raise InvalidArgument("inputs: expected at least one tensor")
        # A caller that traces: its trace id is the span's, and this is the slowest v1 call.
        clock.duration_s = 0.050
        traced = (("traceparent", TRACEPARENT), ("user-agent", "grpc-python/1.85"))
        with telemetry.observe_predict(traced, endpoint="fraud") as obs:
            assert obs.trace_id_hex == CALLER_TRACE_ID
            obs.answered("fraud", "fraud-model", 1, "p-traced")
        assert telemetry.force_flush(10_000)
    finally:
        telemetry.shutdown()

    stats = _stats_by_key(control_plane.stub, endpoint="fraud", window_seconds=0)
    assert set(stats) == {
        ("fraud", "fraud-model", 1), ("fraud", "fraud-model", 2), ("fraud", "", 0),
    }
    v1, v2, early = stats[("fraud", "fraud-model", 1)], stats[("fraud", "fraud-model", 2)], stats[
        ("fraud", "", 0)
    ]
    assert (v1.request_count, v1.error_count) == (204, 3)
    assert (v2.request_count, v2.error_count) == (120, 20)
    assert (early.request_count, early.error_count) == (5, 5)
    for s in (v1, v2, early):
        assert s.window_seconds == 60
        assert (s.window_request_count, s.window_error_count) == (s.request_count, s.error_count)
        assert 0 < s.p50_ms <= s.p90_ms <= s.p99_ms

    v2_all = np.concatenate([v2_durations, np.full(20, 0.004)])
    for q, got in ((50, v2.p50_ms), (90, v2.p90_ms), (99, v2.p99_ms)):
        truth_s = float(np.percentile(v2_all, q))
        assert abs(got - truth_s * 1000) <= _bucket_width_ms(truth_s), (q, got, truth_s)
    v1_truth_s = float(np.percentile(np.concatenate([v1_durations, [0.002] * 3, [0.05]]), 50))
    assert abs(v1.p50_ms - v1_truth_s * 1000) <= _bucket_width_ms(v1_truth_s)

    # The caller's trace is v1's slowest request, so it leads v1's exemplars.
    assert v1.exemplar_trace_ids[0] == CALLER_TRACE_ID
    assert len(v2.exemplar_trace_ids) >= 3
    assert all(len(t) == 32 and int(t, 16) for t in v2.exemplar_trace_ids)
    assert len(early.exemplar_trace_ids) >= 1

    assert _stats_by_key(control_plane.stub, endpoint="other") == {}


def test_window_seconds_past_an_hour_is_invalid(control_plane: ControlPlane) -> None:
    with pytest.raises(grpc.RpcError) as info:
        control_plane.stub.GetStats(telemetry_pb2.GetStatsRequest(window_seconds=3601), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "window_seconds must be between 1 and 3600 (0 for 60), got 3601"


def test_a_stock_cumulative_exporter_is_not_double_counted(control_plane: ControlPlane) -> None:
    # The SDK's default temporality is CUMULATIVE: each export repeats the totals.
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=control_plane.address, insecure=True),
        export_interval_millis=60_000,
    )
    provider = MeterProvider(
        metric_readers=[reader],
        views=[View(instrument_name="modelplane.predict.duration",
                    aggregation=ExplicitBucketHistogramAggregation(boundaries=BOUNDS_S))],
        shutdown_on_exit=False,
    )
    meter = provider.get_meter("peer")
    histogram = meter.create_histogram("modelplane.predict.duration", unit="ms")
    attributes = {"modelplane.endpoint": "peer", "modelplane.model": "m",
                  "modelplane.version": 4, "modelplane.status": "OK"}
    try:
        for _ in range(10):
            histogram.record(2.0, attributes=attributes)  # milliseconds: the unit says so
        assert provider.force_flush(10_000)
        for _ in range(5):
            histogram.record(2.0, attributes=attributes)
        assert provider.force_flush(10_000)
        assert provider.force_flush(10_000)  # nothing new: must add nothing
    finally:
        provider.shutdown()
    [record] = control_plane.aggregator.query("peer", 60)
    assert record.request_count == 15
    assert abs(record.p50_ms - 2.0) <= _bucket_width_ms(0.002)


def test_spans_reach_every_endpoint_with_their_attributes(control_plane: ControlPlane) -> None:
    with running_collector() as (address, collector):
        telemetry = DataPlaneTelemetry(
            [control_plane.address, address], "modelplane-replica", "replica-7",
            metric_export_interval_ms=200,
        )
        traced = (("traceparent", TRACEPARENT),)
        try:
            with telemetry.observe_predict(traced, endpoint="fraud") as obs:
                obs.answered("fraud", "fraud-model", 3, "pred-1")
            with pytest.raises(NotFound), telemetry.observe_predict(traced, endpoint="nope"):
                raise NotFound("endpoint 'nope' not found")
            # Unsampled by the caller: counted, never exported.
            unsampled = (("traceparent", TRACEPARENT[:-2] + "00"),)
            with telemetry.observe_predict(unsampled, endpoint="fraud") as obs:
                obs.answered("fraud", "fraud-model", 3, "pred-2")
            assert telemetry.force_flush(10_000)
        finally:
            telemetry.shutdown()

    assert len(collector.spans) == 2
    ok, failed = sorted(collector.spans, key=lambda s: s.start_time_unix_nano)
    assert {kv.key for kv in ok.attributes} >= {"rpc.system", "rpc.service", "rpc.method"}
    for span in (ok, failed):
        assert span.name == "modelplane.v1.InferenceService/Predict"
        assert span.kind == trace_pb2.Span.SPAN_KIND_SERVER
        assert span.trace_id.hex() == CALLER_TRACE_ID
        assert span.parent_span_id.hex() == "00f067aa0ba902b7"
    ok_attrs = {kv.key: kv.value for kv in ok.attributes}
    assert ok_attrs["rpc.system"].string_value == "grpc"
    assert ok_attrs["modelplane.endpoint"].string_value == "fraud"
    assert ok_attrs["modelplane.model"].string_value == "fraud-model"
    assert ok_attrs["modelplane.version"].int_value == 3
    assert ok_attrs["modelplane.prediction_id"].string_value == "pred-1"
    assert ok.status.code != trace_pb2.Status.STATUS_CODE_ERROR
    failed_attrs = {kv.key: kv.value for kv in failed.attributes}
    assert failed_attrs["modelplane.endpoint"].string_value == "nope"
    assert failed_attrs["modelplane.status"].string_value == "NOT_FOUND"
    assert "modelplane.model" not in failed_attrs
    assert failed.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert failed.status.message == "NOT_FOUND: endpoint 'nope' not found"
    assert collector.resources[0]["service.name"] == "modelplane-replica"
    assert collector.resources[0]["service.instance.id"] == "replica-7"

    # The control plane got the same: all three requests counted, the failure as one.
    stats = {(r.endpoint, r.version): r for r in control_plane.aggregator.query(None, 60)}
    assert stats[("fraud", 3)].request_count == 2
    assert (stats[("nope", 0)].request_count, stats[("nope", 0)].error_count) == (1, 1)
