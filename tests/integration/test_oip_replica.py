"""The Open Inference Protocol on a real replica (in-process), real Redis, registry and gRPC.

Driven with stubs generated from our own proto; the official clients are
exercised separately (test_oip_official_clients.py) in their own virtualenv.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelplane.codec.oip import decode_outputs, encode_input
from modelplane.control.telemetry_servicer import add_telemetry_services
from modelplane.domain.errors import NotFound
from modelplane.domain.models import RouteTarget
from modelplane.oip import grpc_service_pb2 as pb
from modelplane.sample_models import reference_linear
from modelplane.serving.grpc_server import health_status
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.data_plane import DataPlaneTelemetry
from modelplane.v1 import telemetry_pb2, telemetry_pb2_grpc
from tests.integration.oip_models import int64_model, run_onnx, string_model
from tests.integration.oip_stack import SEEDS, Stack, oip_stack

pytestmark = pytest.mark.integration

X = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
A = np.array([[1, -2, 3], [40, 50, 60]], dtype=np.int64)
TEXT = np.array(["cat", "Dog", "héron", ""], dtype=object)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Shared by the tests that change nothing the others look at."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    with oip_stack(redis_url, prefix, tmp_path_factory.mktemp("oip")) as running:
        yield running


@pytest.fixture()
def fresh(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own, for tests that count requests or change routes."""
    with oip_stack(redis_url, key_prefix, tmp_path) as running:
        yield running


def _infer_request(
    name: str, inputs: dict[str, np.ndarray], version: str = "", outputs: tuple[str, ...] = ()
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=name, model_version=version, id="req-7")
    for input_name, array in inputs.items():
        encode_input(input_name, array, request)
    for output in outputs:
        request.outputs.add(name=output)
    return request


def _error(call: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    return call.code(), call.details()  # type: ignore[attr-defined]


# ------------------------------------------------------------------- inference


def test_endpoint_infer_answers_with_the_routed_version(stack: Stack) -> None:
    response = stack.stub.ModelInfer(_infer_request("fraud", {"x": X}), timeout=5)
    assert (response.model_name, response.model_version, response.id) == ("fraud", "1", "req-7")
    assert response.parameters["modelplane.model"].string_param == "m"
    assert response.parameters["modelplane.endpoint"].string_param == "fraud"
    assert len(response.parameters["modelplane.prediction_id"].string_param) == 32
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("y", "FP32", [2, 4])
    np.testing.assert_allclose(
        decode_outputs(response)["y"], reference_linear(X, seed=SEEDS[1]), rtol=1e-5, atol=1e-5
    )


def test_a_version_number_pins_the_version(stack: Stack) -> None:
    # Through the endpoint (whose targets are all model "m") and naming the model.
    for name in ("fraud", "m"):
        response = stack.stub.ModelInfer(_infer_request(name, {"x": X}, version="2"), timeout=5)
        assert response.model_version == "2"
        np.testing.assert_allclose(
            decode_outputs(response)["y"], reference_linear(X, seed=SEEDS[2]), rtol=1e-5
        )
    # A model named without a version: its latest.
    assert stack.stub.ModelInfer(_infer_request("m", {"x": X}), timeout=5).model_version == "2"


def test_pinning_a_version_of_a_split_endpoint_needs_the_model(stack: Stack) -> None:
    stack.registry.set_route(
        "split",
        [RouteTarget("m", 50, version=1), RouteTarget("ints", 50, version=1)],
        expected_revision=0,
    )
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.ModelInfer(_infer_request("split", {"x": X}, version="1"), timeout=5)
    assert _error(caught.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "model_version: endpoint 'split' routes to several models (ints, m); "
        "name one of them to pin a version",
    )


def test_int64_and_bytes_models_equal_onnxruntime(stack: Stack) -> None:
    ints = stack.stub.ModelInfer(_infer_request("ints", {"a": A}), timeout=5)
    expected = run_onnx(int64_model(), {"a": A})
    got = decode_outputs(ints)
    assert [o.datatype for o in ints.outputs] == ["INT64", "INT64"]
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array)

    words = stack.stub.ModelInfer(_infer_request("words", {"text": TEXT}), timeout=5)
    expected = run_onnx(string_model(), {"text": TEXT})
    got = decode_outputs(words)
    assert [o.datatype for o in words.outputs] == ["BYTES", "INT64"]
    np.testing.assert_array_equal(got["tagged"], expected["tagged"])
    np.testing.assert_array_equal(got["label"], expected["label"])


def test_requested_outputs_subset_is_honoured(stack: Stack) -> None:
    response = stack.stub.ModelInfer(
        _infer_request("ints", {"a": A}, outputs=("total",)), timeout=5
    )
    assert [o.name for o in response.outputs] == ["total"]
    np.testing.assert_array_equal(decode_outputs(response)["total"], A.sum(axis=1, keepdims=True))


def test_typed_contents_and_parameters_are_accepted(stack: Stack) -> None:
    request = pb.ModelInferRequest(model_name="fraud", id="typed")
    request.parameters["priority"].uint64_param = 2
    request.parameters["timeout"].int64_param = 5_000_000
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 16])
    tensor.contents.fp32_contents.extend(X.reshape(-1).tolist())
    response = stack.stub.ModelInfer(request, timeout=5)
    assert response.id == "typed"
    np.testing.assert_allclose(
        decode_outputs(response)["y"], reference_linear(X, seed=SEEDS[1]), rtol=1e-5, atol=1e-5
    )


# ------------------------------------------------------------------- bad input


def _raw_request(datatype: str, shape: list[int], raw: list[bytes]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="fraud", raw_input_contents=raw)
    request.inputs.add(name="x", datatype=datatype, shape=shape)
    return request


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            _raw_request("COMPLEX64", [1, 16], [b"\0" * 128]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'x': unsupported datatype 'COMPLEX64'",
        ),
        (
            _raw_request("FP32", [2, 16], [b"\0" * 64]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'x': raw contents have 64 bytes, shape [2, 16] of FP32 needs 128",
        ),
        (
            _raw_request("FP32", [1, 16], [b"\0" * 64, b"\0" * 64]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "raw_input_contents: 2 entries for 1 inputs ('x')",
        ),
        (
            # Under the element limit, over the message size: refused before decoding.
            _raw_request("FP64", [1024, 9000], [b""]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "input 'x': shape [1024, 9000] of FP64 is 73728000 bytes, over the limit of 67108864",
        ),
        (
            _raw_request("FP64", [1, 16], [b"\0" * 128]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'x': expected float32 [-1, 16], got float64 [1, 16]",
        ),
    ],
    ids=["datatype", "count", "raw-count", "oversize", "dtype-mismatch"],
)
def test_bad_tensors_are_refused_naming_the_tensor(
    stack: Stack, request_: pb.ModelInferRequest, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.ModelInfer(request_, timeout=5)
    got_code, details = _error(caught.value)
    assert got_code == code
    assert message in details


def test_broken_bytes_prefix_and_unknown_output(stack: Stack) -> None:
    request = pb.ModelInferRequest(
        model_name="words", raw_input_contents=[struct.pack("<I", 50) + b"short"]
    )
    request.inputs.add(name="text", datatype="BYTES", shape=[1])
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.ModelInfer(request, timeout=5)
    assert _error(caught.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'text': BYTES element 0 declares 50 bytes but only 5 remain",
    )
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.ModelInfer(_infer_request("ints", {"a": A}, outputs=("nope",)), timeout=5)
    code, details = _error(caught.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "has no output 'nope'" in details


def test_unknown_model_is_not_found(stack: Stack) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.ModelInfer(_infer_request("ghost", {"x": X}), timeout=5)
    assert _error(caught.value) == (grpc.StatusCode.NOT_FOUND, "model 'ghost' not found")


def test_oversize_message_is_resource_exhausted(stack: Stack) -> None:
    # Over the server's receive limit (64 MiB): refused by the transport.
    big = _raw_request("FP32", [1, 17 << 20], [b"\0" * (68 << 20)])
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.ModelInfer(big, timeout=30)
    code, details = _error(caught.value)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in details


# ---------------------------------------------------------------------- stream


def test_stream_reports_a_bad_request_and_keeps_serving(stack: Stack) -> None:
    bad = _raw_request("FP32", [2, 16], [b"\0" * 8])
    bad.id = "bad"
    requests = [
        _infer_request("fraud", {"x": X}),
        bad,
        _infer_request("ints", {"a": A}),
        _infer_request("ghost", {"x": X}),
        _infer_request("words", {"text": TEXT}),
    ]
    responses = list(stack.stub.ModelStreamInfer(iter(requests), timeout=10))
    assert len(responses) == 5
    errors = [r.error_message for r in responses]
    assert errors[0] == errors[2] == errors[4] == ""
    assert errors[1] == "input 'x': raw contents have 8 bytes, shape [2, 16] of FP32 needs 128"
    assert errors[3] == "model 'ghost' not found"
    assert responses[1].infer_response.id == "bad"
    np.testing.assert_array_equal(decode_outputs(responses[2].infer_response)["scaled"], A * 3)
    np.testing.assert_array_equal(
        decode_outputs(responses[4].infer_response)["tagged"],
        run_onnx(string_model(), {"text": TEXT})["tagged"],
    )


# ------------------------------------------------------------- health/metadata


def test_health_metadata_and_readiness(stack: Stack) -> None:
    assert stack.stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live
    assert stack.stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
    assert health_status(stack.runtime.address, "inference.GRPCInferenceService") == "SERVING"
    ready = stack.stub.ModelReady
    assert ready(pb.ModelReadyRequest(name="fraud"), timeout=5).ready
    assert ready(pb.ModelReadyRequest(name="m", version="2"), timeout=5).ready
    assert not ready(pb.ModelReadyRequest(name="m", version="9"), timeout=5).ready
    assert not ready(pb.ModelReadyRequest(name="ghost"), timeout=5).ready

    server = stack.stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=5)
    assert server.name == "modelplane"
    assert "model_repository" in server.extensions

    meta = stack.stub.ModelMetadata(pb.ModelMetadataRequest(name="m"), timeout=5)
    assert (meta.name, list(meta.versions), meta.platform) == ("m", ["1", "2"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("x", "FP32", [-1, 16])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("y", "FP32", [-1, 4])]
    words = stack.stub.ModelMetadata(pb.ModelMetadataRequest(name="words"), timeout=5)
    assert [(t.name, t.datatype) for t in words.inputs] == [("text", "BYTES")]
    endpoint = stack.stub.ModelMetadata(pb.ModelMetadataRequest(name="fraud"), timeout=5)
    assert list(endpoint.versions) == ["1"]
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.ModelMetadata(pb.ModelMetadataRequest(name="ghost"), timeout=5)
    assert _error(caught.value) == (grpc.StatusCode.NOT_FOUND, "model 'ghost' not found")


def test_reflection_lists_the_protocol(stack: Stack) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(stack.channel)
    (answer,) = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {service.name for service in answer.list_services_response.service}
    assert {"inference.GRPCInferenceService", "modelplane.v1.InferenceService"} <= names


# ------------------------------------------------------------------ statistics


def test_statistics_per_version(fresh: Stack) -> None:
    for _ in range(3):
        fresh.stub.ModelInfer(_infer_request("fraud", {"x": X}), timeout=5)
    fresh.stub.ModelInfer(_infer_request("m", {"x": X}, version="2"), timeout=5)
    with pytest.raises(grpc.RpcError):
        fresh.stub.ModelInfer(_infer_request("m", {"x": X.astype(np.float64)}, "2"), timeout=5)

    stats = fresh.stub.ModelStatistics(pb.ModelStatisticsRequest(name="m"), timeout=5)
    by_version = {s.version: s for s in stats.model_stats}
    assert set(by_version) == {"1", "2"}
    one, two = by_version["1"], by_version["2"]
    assert one.name == "m"
    assert (one.inference_stats.success.count, one.inference_stats.fail.count) == (3, 0)
    assert (two.inference_stats.success.count, two.inference_stats.fail.count) == (1, 1)
    assert one.inference_count == 6  # rows
    assert one.execution_count == 3
    assert one.last_inference > 0
    for phase in ("compute_input", "compute_infer", "compute_output"):
        duration = getattr(one.inference_stats, phase)
        assert duration.count == 3
        assert duration.ns > 0
    assert one.inference_stats.success.ns >= one.inference_stats.compute_infer.ns

    pinned = fresh.stub.ModelStatistics(pb.ModelStatisticsRequest(name="m", version="1"))
    assert [s.version for s in pinned.model_stats] == ["1"]
    # Known but never asked: zeros.
    idle = fresh.stub.ModelStatistics(pb.ModelStatisticsRequest(name="ints"), timeout=5)
    assert [(s.name, s.version, s.inference_stats.success.count) for s in idle.model_stats] == [
        ("ints", "1", 0)
    ]
    everything = fresh.stub.ModelStatistics(pb.ModelStatisticsRequest(), timeout=5)
    assert {(s.name, s.version) for s in everything.model_stats} >= {("m", "1"), ("m", "2")}
    with pytest.raises(grpc.RpcError) as caught:
        fresh.stub.ModelStatistics(pb.ModelStatisticsRequest(name="ghost"), timeout=5)
    assert _error(caught.value) == (grpc.StatusCode.NOT_FOUND, "model 'ghost' not found")


# ------------------------------------------------------------------ repository


def test_repository_load_unload_index_are_routes_and_audited(fresh: Stack) -> None:
    index = fresh.stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=5)
    entries = {(m.name, m.version): m.state for m in index.models}
    assert entries[("fraud", "")] == "READY"
    assert entries[("m", "1")] == entries[("m", "2")] == entries[("ints", "1")] == "READY"
    assert ("ints", "") not in entries

    metadata = (("x-modelplane-actor", "svc-checkout"),)
    fresh.stub.RepositoryModelLoad(
        pb.RepositoryModelLoadRequest(model_name="ints"), metadata=metadata, timeout=15
    )
    route = fresh.registry.get_route("ints")
    assert [(t.model, t.version, t.weight) for t in route.targets] == [("ints", 1, 100)]
    assert fresh.runtime.table.endpoint("ints") is not None
    index = fresh.stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), timeout=5)
    assert ("ints", "") in {(m.name, m.version) for m in index.models}

    # A reload pins another version through a Triton-style config.
    load = pb.RepositoryModelLoadRequest(model_name="m")
    load.parameters["config"].string_param = '{"version_policy": {"specific": {"versions": [1]}}}'
    fresh.stub.RepositoryModelLoad(load, metadata=metadata, timeout=15)
    assert [(t.model, t.version) for t in fresh.registry.get_route("m").targets] == [("m", 1)]
    answered = fresh.stub.ModelInfer(_infer_request("m", {"x": X}), timeout=5)
    assert answered.parameters["modelplane.endpoint"].string_param == "m"
    assert answered.model_version == "1"

    fresh.stub.RepositoryModelUnload(
        pb.RepositoryModelUnloadRequest(model_name="ints"), metadata=metadata, timeout=15
    )
    with pytest.raises(NotFound):
        fresh.registry.get_route("ints")
    assert fresh.runtime.table.endpoint("ints") is None

    events = fresh.registry.query_audit(endpoint="ints")
    assert [(e.action, e.actor) for e in events] == [
        ("set_route", "svc-checkout"),
        ("delete_route", "svc-checkout"),
    ]
    assert events[0].reason == "RepositoryModelLoad (Open Inference Protocol)"


def test_repository_refusals(fresh: Stack) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        fresh.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="ghost"))
    code, details = _error(caught.value)
    assert code == grpc.StatusCode.NOT_FOUND
    assert details.startswith("model 'ghost' not found")
    load = pb.RepositoryModelLoadRequest(model_name="m")
    load.parameters["version"].string_param = "two"
    with pytest.raises(grpc.RpcError) as caught:
        fresh.stub.RepositoryModelLoad(load, timeout=5)
    assert _error(caught.value) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "parameters['version']: expected a version number >= 1, got 'two'",
    )
    # Unloading what is not loaded is a no-op, as in Triton.
    fresh.stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="ints"))


# ------------------------------------------------------------------- telemetry


def test_model_infer_reaches_the_control_planes_telemetry(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    aggregator = StatsAggregator()
    add_telemetry_services(server, aggregator)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    telemetry = DataPlaneTelemetry(
        [f"127.0.0.1:{port}"], "modelplane-replica", "oip-replica", metric_export_interval_ms=200
    )
    try:
        with oip_stack(redis_url, key_prefix, tmp_path, telemetry=telemetry) as stack:
            for _ in range(4):
                stack.stub.ModelInfer(_infer_request("fraud", {"x": X}), timeout=5)
            with pytest.raises(grpc.RpcError):
                stack.stub.ModelInfer(_infer_request("fraud", {"x": A}), timeout=5)
            # A stream's requests are observed like ModelInfer's, its failures too.
            streamed = list(
                stack.stub.ModelStreamInfer(
                    iter([_infer_request("fraud", {"x": X}), _infer_request("fraud", {"x": A})]),
                    timeout=5,
                )
            )
            assert [bool(r.error_message) for r in streamed] == [False, True]
            assert telemetry.force_flush(10_000)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = telemetry_pb2_grpc.TelemetryServiceStub(channel).GetStats(
                telemetry_pb2.GetStatsRequest(endpoint="fraud", window_seconds=0), timeout=5
            )
    finally:
        telemetry.shutdown()
        server.stop(0).wait()
    by_key = {(s.endpoint, s.model, s.version): s for s in response.stats}
    answered = by_key[("fraud", "m", 1)]
    assert (answered.request_count, answered.error_count) == (5, 0)
    # A refused request never got a version: filed under the endpoint it asked for.
    refused = by_key[("fraud", "", 0)]
    assert (refused.request_count, refused.error_count) == (2, 2)
