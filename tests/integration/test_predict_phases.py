"""A prediction's phases, seen from outside: child spans of an exported trace
(routing decision, wait for the version's runner, model run, shadow copy) and the
Open Inference Protocol's queue / infer statistics, on an in-process replica."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from modelplane.codec.tensors import array_to_tensor
from modelplane.config import Settings
from modelplane.domain.models import RouteTarget, ShadowTarget
from modelplane.oip import grpc_service_pb2 as pb
from modelplane.oip import grpc_service_pb2_grpc as pb_grpc
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model
from modelplane.serving.replica import ReplicaRuntime
from modelplane.telemetry.data_plane import DataPlaneTelemetry
from modelplane.v1 import inference_pb2, inference_pb2_grpc
from tests.integration.otlp_collectors import SpanCapture, running_collector, span_attributes

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SAMPLED = (("traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01"),)
X = np.ones((1, 16), np.float32)


@dataclass
class Replica:
    runtime: ReplicaRuntime
    capture: SpanCapture
    telemetry: DataPlaneTelemetry


@pytest.fixture()
def replica(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Replica]:
    with running_collector() as (address, capture):
        yield from _replica(redis_url, key_prefix, tmp_path, address, capture)


def _replica(
    redis_url: str, key_prefix: str, tmp_path: Path, address: str, capture: SpanCapture
) -> Iterator[Replica]:
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path, host="127.0.0.1",
        inference_port=0,
        # Even the tiny model runs on its version's thread, batched: queue waits happen.
        inline_run_threshold_us=0,
    )
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    registry = Registry(
        store, ArtifactStore(settings.resolved_artifact_root),
        replicas=ReplicaDirectory(store._redis, key_prefix),
    )
    for seed in (1, 2):
        registry.register_version("m", f"v{seed}", create_model=True,
                                  chunks=[linear_model(seed=seed)])
    registry.set_route("fraud", [RouteTarget("m", 100, version=1)], expected_revision=0,
                       shadows=(ShadowTarget("m", 100.0, version=2),))
    telemetry = DataPlaneTelemetry(
        [address], "phases", "r1", metric_export_interval_ms=200,
        trace_sample_ratio=0.0, drift_rows_per_interval=0, record_predictions=False,
    )
    runtime = ReplicaRuntime(settings, "phases-replica", telemetry=telemetry, reuse_port=False)
    try:
        yield Replica(runtime, capture, telemetry)
    finally:
        runtime.close()
        telemetry.shutdown()
        store._redis.close()


def _wait_for(
    capture: SpanCapture, names: set[str], timeout_s: float = 10.0
) -> list[trace_pb2.Span]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if names <= {span.name for span in capture.spans}:
            return list(capture.spans)
        time.sleep(0.05)
    exported = [span.name for span in capture.spans]
    raise AssertionError(f"spans {sorted(names)} not all exported: {exported}")


def test_an_exported_trace_has_a_child_span_per_phase_and_per_shadow(replica: Replica) -> None:
    with grpc.insecure_channel(replica.runtime.address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = inference_pb2.PredictRequest(endpoint="fraud", inputs=[array_to_tensor("x", X)])
        response = stub.Predict(request, metadata=SAMPLED, timeout=5)
    assert response.version == 1

    spans = _wait_for(replica.capture, {
        "modelplane.v1.InferenceService/Predict", "modelplane.route", "modelplane.queue",
        "modelplane.inference", "modelplane.shadow",
    })
    (root,) = [s for s in spans if s.name == "modelplane.v1.InferenceService/Predict"]
    children = {s.name: s for s in spans if s.parent_span_id == root.span_id}
    assert set(children) == {
        "modelplane.route", "modelplane.queue", "modelplane.inference", "modelplane.shadow"
    }
    for child in children.values():
        assert child.trace_id.hex() == TRACE_ID
        assert child.kind == trace_pb2.Span.SPAN_KIND_INTERNAL
        assert child.start_time_unix_nano <= child.end_time_unix_nano
    route, queue, inference = (children[n] for n in
                               ("modelplane.route", "modelplane.queue", "modelplane.inference"))
    # The phases follow each other inside the request's span.
    assert root.start_time_unix_nano <= route.start_time_unix_nano
    assert route.end_time_unix_nano <= queue.start_time_unix_nano
    assert queue.end_time_unix_nano == inference.start_time_unix_nano
    assert inference.end_time_unix_nano <= root.end_time_unix_nano
    assert span_attributes(route)["modelplane.route_reason"] == "weight"
    assert span_attributes(inference)["modelplane.version"] == 1
    assert span_attributes(inference)["modelplane.batch.requests"] == 1
    shadow = span_attributes(children["modelplane.shadow"])
    assert (shadow["modelplane.version"], shadow["modelplane.shadow.ok"]) == (2, True)


def test_concurrent_requests_report_their_queue_wait_and_share_runs(replica: Replica) -> None:
    async def burst() -> None:
        async with grpc.aio.insecure_channel(replica.runtime.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(
                model_name="fraud",
                inputs=[pb.ModelInferRequest.InferInputTensor(
                    name="x", datatype="FP32", shape=[1, 16],
                    contents=pb.InferTensorContents(fp32_contents=[1.0] * 16),
                )],
            )
            for _ in range(5):
                await asyncio.gather(*(
                    stub.ModelInfer(request, metadata=SAMPLED, timeout=10) for _ in range(48)
                ))

    asyncio.run(burst())
    with grpc.insecure_channel(replica.runtime.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name="m", version="1"), timeout=5)
    (record,) = stats.model_stats
    inference = record.inference_stats
    assert inference.success.count == 240
    # Requests that arrived while their version was running waited for the next run.
    assert inference.queue.count == 240 and inference.queue.ns > 0
    assert inference.compute_infer.ns > 0
    spans = _wait_for(replica.capture, {"modelplane.inference"})
    deadline = time.monotonic() + 10
    shared = 0
    while time.monotonic() < deadline and not shared:
        shared = max(
            int(str(span_attributes(s)["modelplane.batch.requests"]))
            for s in replica.capture.spans if s.name == "modelplane.inference"
        )
        if shared <= 1:
            shared = 0
            time.sleep(0.1)
    assert spans and shared > 1, "no run served more than one request"
