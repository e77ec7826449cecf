"""Random request messages, built from the descriptors, against both planes' real
servers: every answer is a defined status (never INTERNAL or UNKNOWN) and the
server keeps serving."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelplane.config import Settings
from modelplane.control.server import _SERVICE_NAMES, ControlPlane
from modelplane.oip import grpc_service_pb2 as oip_pb2
from modelplane.v1 import inference_pb2
from tests.fuzz.strategies import consistent_tensor, message_strategy
from tests.integration.serving_plane import ServingPlane, serving_plane

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("MODELPLANE_FUZZ_EXAMPLES", "25"))
UNDEFINED = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def _methods(service_names: list[str]) -> list[MethodDescriptor]:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    return [m for name in service_names for m in pool.FindServiceByName(name).methods]


def _invoke(channel: grpc.Channel, method: MethodDescriptor, messages: list[Any]) -> None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    kwargs: dict[str, Any] = {
        "request_serializer": lambda m: m.SerializeToString(),
        "response_deserializer": lambda b: b,
    }
    try:
        if method.client_streaming and method.server_streaming:
            list(channel.stream_stream(path, **kwargs)(iter(messages), timeout=20))
        elif method.client_streaming:
            channel.stream_unary(path, **kwargs)(iter(messages), timeout=20)
        elif method.server_streaming:
            list(channel.unary_stream(path, **kwargs)(messages[0], timeout=20))
        else:
            channel.unary_unary(path, **kwargs)(messages[0], timeout=20)
    except grpc.RpcError as err:
        assert err.code() not in UNDEFINED, f"{path}: {err.code().name}: {err.details()}"


def _still_serving(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _fuzz_method(address: str, method: MethodDescriptor, examples: int) -> None:
    strategy = st.lists(message_strategy(method.input_type), min_size=1, max_size=3)
    channel = grpc.insecure_channel(address)

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(messages: list[Any]) -> None:
        _invoke(channel, method, messages)

    try:
        run()
    finally:
        channel.close()
    _still_serving(address)


# ------------------------------------------------------------------- data plane


@pytest.fixture(scope="module")
def replica(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingPlane]:
    with serving_plane(
        redis_url, f"fuzz{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("fuzz")
    ) as plane:
        yield plane


DATA_PLANE = _methods(["modelplane.v1.InferenceService", "inference.GRPCInferenceService"])


@pytest.mark.parametrize("method", DATA_PLANE, ids=lambda m: m.name)
def test_every_data_plane_rpc_answers_random_requests_with_defined_statuses(
    replica: ServingPlane, method: MethodDescriptor
) -> None:
    heavy = method.name in ("Predict", "ModelInfer")
    _fuzz_method(replica.address, method, EXAMPLES if heavy else max(EXAMPLES // 6, 5))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(["open", "secure", "nope", ""]),
    st.lists(consistent_tensor(inference_pb2.PredictRequest().inputs.add().__class__), max_size=2),
)
def test_predict_with_plausible_tensors_answers_with_defined_statuses(
    replica: ServingPlane, endpoint: str, tensors: list[Any]
) -> None:
    request = inference_pb2.PredictRequest(endpoint=endpoint, inputs=tensors)
    with grpc.insecure_channel(replica.address) as channel:
        _invoke(channel, inference_pb2.DESCRIPTOR.services_by_name["InferenceService"]
                .methods_by_name["Predict"], [request])


def test_an_oip_request_naming_a_huge_bytes_tensor_is_refused(replica: ServingPlane) -> None:
    request = oip_pb2.ModelInferRequest(model_name="open")
    tensor = request.inputs.add(name="x", datatype="BYTES", shape=[2**31])
    request.raw_input_contents.append(b"")
    assert tensor.shape[0] == 2**31
    with grpc.insecure_channel(replica.address) as channel:
        _invoke(channel, oip_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
                .methods_by_name["ModelInfer"], [request])
    _still_serving(replica.address)


# ---------------------------------------------------------------- control plane


@pytest.fixture(scope="module")
def control(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    folder: Path = tmp_path_factory.mktemp("fuzz-control")
    plane = ControlPlane(
        Settings(
            redis_url=redis_url, key_prefix=f"fuzzc{uuid.uuid4().hex[:8]}", data_dir=folder,
            control_port=0, shutdown_grace_s=0.5, validation_timeout_s=20,
        ),
        redis_url,
        max_workers=4,
    )
    plane.start()
    yield plane
    plane.stop()


CONTROL_PLANE = _methods(list(_SERVICE_NAMES))


@pytest.mark.parametrize("method", CONTROL_PLANE, ids=lambda m: m.name)
def test_every_control_plane_rpc_answers_random_requests_with_defined_statuses(
    control: ControlPlane, method: MethodDescriptor
) -> None:
    _fuzz_method(control.address, method, max(EXAMPLES // 10, 4))
