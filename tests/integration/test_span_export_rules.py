"""Which Predict spans a replica exports, seen by a real OTLP/gRPC trace receiver.

Every error and every request slower than the threshold is exported; a caller's
sampled ``traceparent`` is continued; the rest is head-sampled (ratio 0 here). An
unreachable collector costs the request nothing: spans that do not fit the
bounded queue are dropped and counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from modelplane.domain.errors import InvalidArgument
from modelplane.telemetry.data_plane import DataPlaneTelemetry
from tests.integration.otlp_collectors import SpanCapture, running_collector, span_attributes

pytestmark = pytest.mark.integration

CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"


@pytest.fixture()
def receiver() -> Iterator[tuple[str, SpanCapture]]:
    with running_collector() as collector:
        yield collector


class StepClock:
    """Each request starts now and lasts ``duration_ms``."""

    def __init__(self) -> None:
        self.duration_ms = 1.0
        self._start: int | None = None

    def __call__(self) -> int:
        if self._start is None:
            self._start = time.time_ns()
            return self._start
        end = self._start + int(self.duration_ms * 1e6)
        self._start = None
        return end


def test_errors_slow_and_traced_requests_are_exported_the_rest_sampled(
    receiver: tuple[str, SpanCapture],
) -> None:
    address, capture = receiver
    clock = StepClock()
    telemetry = DataPlaneTelemetry(
        [address], "svc", "r1", metric_export_interval_ms=100, clock_ns=clock,
        slow_spans_per_interval=0, trace_sample_ratio=0.0, slow_request_threshold_ms=50,
    )
    try:
        for i in range(20):  # fast, untraced, fine: none exported
            with telemetry.observe_predict((), "fraud") as obs:
                obs.answered("fraud", "m", 1, f"fast{i}")
        clock.duration_ms = 80
        with telemetry.observe_predict((), "fraud") as obs:
            obs.answered("fraud", "m", 1, "slow")
        clock.duration_ms = 1
        with pytest.raises(InvalidArgument), telemetry.observe_predict((), "fraud"):
            raise InvalidArgument("inputs: expected x")
        metadata = (("traceparent", f"00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01"),)
        with telemetry.observe_predict(metadata, "fraud") as obs:
            obs.answered("fraud", "m", 2, "traced")
            obs.record_io({}, {}, route_reason="weight")
        assert telemetry.force_flush(5000)
    finally:
        telemetry.shutdown()
    by_id = {str(span_attributes(s).get("modelplane.prediction_id", "")): s for s in capture.spans}
    assert sorted(by_id) == ["", "slow", "traced"]
    failed = by_id[""]
    assert failed.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert failed.status.message == "INVALID_ARGUMENT: inputs: expected x"
    traced = by_id["traced"]
    assert traced.trace_id.hex() == CALLER_TRACE_ID
    assert traced.parent_span_id.hex() == CALLER_SPAN_ID
    attrs = span_attributes(traced)
    assert attrs["rpc.system"] == "grpc"
    assert attrs["modelplane.version"] == 2
    assert attrs["modelplane.route_reason"] == "weight"
    assert (by_id["slow"].end_time_unix_nano - by_id["slow"].start_time_unix_nano) == 80_000_000


def test_an_unreachable_collector_never_slows_requests_and_drops_are_counted() -> None:
    # Port 9 (discard) on loopback: nothing listens, every export fails and retries.
    telemetry = DataPlaneTelemetry(
        ["127.0.0.1:9"], "svc", "r1", metric_export_interval_ms=100,
        slow_spans_per_interval=0, trace_sample_ratio=1.0, max_queue_size=64,
        export_timeout_s=0.5,
    )
    try:
        started = time.perf_counter()
        for i in range(3000):
            with telemetry.observe_predict((), "fraud") as obs:
                obs.answered("fraud", "m", 1, f"p{i}")
        per_request_us = (time.perf_counter() - started) / 3000 * 1e6
    finally:
        telemetry.shutdown()
    # Most of them: the exporter takes a batch now and then between failed attempts.
    assert telemetry.dropped_spans >= 1000
    # Measured ~30 µs per request here; generous for a loaded 2-core machine.
    assert per_request_us < 500, per_request_us
