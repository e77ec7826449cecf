"""A local OTLP trace collector that keeps what it is sent, shared by the span tests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.trace.v1 import trace_pb2


class SpanCapture(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []
        # One dict of resource attributes per ResourceSpans received.
        self.resources: list[dict[str, str]] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            self.resources.append({
                kv.key: kv.value.string_value for kv in resource_spans.resource.attributes
            })
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@contextmanager
def running_collector() -> Iterator[tuple[str, SpanCapture]]:
    """(address, capture) of a collector listening on a free local port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    capture = SpanCapture()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        capture, server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", capture
    finally:
        server.stop(0).wait()


def span_attributes(span: trace_pb2.Span) -> dict[str, object]:
    return {kv.key: getattr(kv.value, str(kv.value.WhichOneof("value"))) for kv in span.attributes}
