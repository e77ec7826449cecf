"""Local OTLP collectors that keep what they are sent, shared by the telemetry tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
def serving_on_free_port(
    servicer: object, add_to_server: Callable[[object, grpc.Server], None]
) -> Iterator[str]:
    """The address of a local gRPC server answering with ``servicer``."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0).wait()


@contextmanager
def running_collector() -> Iterator[tuple[str, SpanCapture]]:
    """(address, capture) of a trace collector listening on a free local port."""
    capture = SpanCapture()
    with serving_on_free_port(
        capture, trace_service_pb2_grpc.add_TraceServiceServicer_to_server
    ) as address:
        yield address, capture


def span_attributes(span: trace_pb2.Span) -> dict[str, object]:
    return {kv.key: getattr(kv.value, str(kv.value.WhichOneof("value"))) for kv in span.attributes}
