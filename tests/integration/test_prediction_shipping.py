"""Prediction records leave the replica in batches over real OTLP/gRPC logs, with the
predicted class / value right for each record (the vectorised and general paths)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

from modelplane.telemetry.feedback import record_from_json
from modelplane.telemetry.io_records import IoRecorder
from tests.integration.otlp_collectors import serving_on_free_port

pytestmark = pytest.mark.integration


class Sink(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def Export(
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        for resource_logs in request.resource_logs:
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    assert record.event_name == "modelplane.predictions"
                    self.bodies.append(record.body.bytes_value)
        return logs_service_pb2.ExportLogsServiceResponse()


@pytest.fixture()
def sink() -> Iterator[tuple[str, Sink]]:
    capture = Sink()
    with serving_on_free_port(
        capture, logs_service_pb2_grpc.add_LogsServiceServicer_to_server
    ) as address:
        yield address, capture


def test_records_carry_what_each_prediction_predicted(sink: tuple[str, Sink]) -> None:
    address, capture = sink
    recorder = IoRecorder({"service.name": "t"}, None, address)
    rng = np.random.default_rng(0)
    expected: dict[str, tuple[str, list[object]]] = {}
    for i in range(50):
        scores = rng.standard_normal((1, 4 if i % 2 else 3)).astype(np.float32)
        recorder.record("fraud", "m", 1, f"{i:032x}", {}, {"y": scores})
        expected[f"{i:032x}"] = ("index", [int(scores.argmax())])
    batch = rng.standard_normal((3, 5)).astype(np.float32)
    recorder.record("fraud", "m", 2, "b" * 32, {}, {"y": batch})
    expected["b" * 32] = ("index", batch.argmax(axis=1).tolist())
    recorder.record("reg", "r", 1, 'odd"id', {}, {"y": np.array([[2.5]], np.float32)})
    expected['odd"id'] = ("value", [2.5])
    recorder.record("cls", "c", 1, "c" * 32, {}, {"label": np.array([7], np.int64)})
    expected["c" * 32] = ("class", [7])
    recorder.drain()
    recorder.close()
    [body] = capture.bodies
    records = [record_from_json(item) for item in json.loads(body)]
    assert {r.prediction_id: (r.kind, list(r.predicted)) for r in records} == expected
    assert {(r.endpoint, r.model, r.version) for r in records} == {
        ("fraud", "m", 1), ("fraud", "m", 2), ("reg", "r", 1), ("cls", "c", 1)
    }
    assert recorder.dropped_predictions == 0
