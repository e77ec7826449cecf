"""A replica's guards: inference auth per endpoint, role checks on the OIP repository
calls, row and element limits. In-process replica, real Redis, real gRPC."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from modelplane.oip import grpc_service_pb2 as oip_pb2
from modelplane.oip import grpc_service_pb2_grpc as oip_grpc
from modelplane.security.channels import BearerToken
from modelplane.security.tokens import hash_token
from modelplane.v1 import inference_pb2, inference_pb2_grpc
from tests.integration.serving_plane import ServingPlane, predict_request, serving_plane

pytestmark = pytest.mark.integration

READER = "mpt_reader_for_predictions"


@pytest.fixture(scope="module")
def plane(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServingPlane]:
    with serving_plane(
        redis_url,
        f"guards{uuid.uuid4().hex[:8]}",
        tmp_path_factory.mktemp("guards"),
        auth_enabled=True,
        auth_tokens=[f"svc:reader:{hash_token(READER)}"],
        inference_auth_endpoints=["secure"],
        max_rows_per_request=8,
        max_elements_per_tensor=100,
    ) as plane:
        yield plane


def _stub(plane: ServingPlane, token: str | None = None) -> inference_pb2_grpc.InferenceServiceStub:
    channel = grpc.insecure_channel(plane.address)
    if token:
        channel = grpc.intercept_channel(channel, BearerToken(token))
    return inference_pb2_grpc.InferenceServiceStub(channel)


def _error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_an_open_endpoint_needs_no_token(plane: ServingPlane) -> None:
    assert _stub(plane).Predict(predict_request("open"), timeout=10).version == 1


def test_a_protected_endpoint_needs_a_token(plane: ServingPlane) -> None:
    err = _error(lambda: _stub(plane).Predict(predict_request("secure"), timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.details() == "authorization: missing bearer token"
    err = _error(lambda: _stub(plane, "mpt_wrong").Predict(predict_request("secure"), timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert err.details() == "authorization: unknown or revoked token"
    assert _stub(plane, READER).Predict(predict_request("secure"), timeout=10).version == 1


def test_naming_a_model_directly_needs_a_token_once_any_endpoint_is_protected(
    plane: ServingPlane,
) -> None:
    request = inference_pb2.PredictRequest(
        model=inference_pb2.ModelRef(model="m", version=1), inputs=predict_request().inputs
    )
    err = _error(lambda: _stub(plane).Predict(request, timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert _stub(plane, READER).Predict(request, timeout=10).model == "m"


def test_oip_repository_changes_need_a_deployer(plane: ServingPlane) -> None:
    stub = oip_grpc.GRPCInferenceServiceStub(
        grpc.intercept_channel(grpc.insecure_channel(plane.address), BearerToken(READER))
    )
    err = _error(
        lambda: stub.RepositoryModelLoad(
            oip_pb2.RepositoryModelLoadRequest(model_name="m"), timeout=10
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == (
        "/inference.GRPCInferenceService/RepositoryModelLoad: needs role deployer; "
        "svc has reader"
    )
    live = oip_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(plane.address))
    assert live.ServerLive(oip_pb2.ServerLiveRequest(), timeout=10).live


def test_too_many_rows_is_invalid_argument_before_decoding(plane: ServingPlane) -> None:
    x = np.ones((9, 16), np.float32)
    err = _error(lambda: _stub(plane).Predict(predict_request("open", x), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "inputs[x].shape[0]: 9 rows exceed the limit of 8 per request; split the batch"
    )


def test_a_huge_declared_shape_is_refused_without_allocating(plane: ServingPlane) -> None:
    request = predict_request("open")
    del request.inputs[0].shape[:]
    request.inputs[0].shape.extend([1, 2**40])
    err = _error(lambda: _stub(plane).Predict(request, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        f"inputs[x].shape: {2**40} elements exceed the limit of 100 per tensor"
    )


def _oip_request(x: np.ndarray) -> oip_pb2.ModelInferRequest:
    request = oip_pb2.ModelInferRequest(model_name="open", id="r1")
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.astype(np.float32).tobytes())
    return request


def test_the_limits_hold_for_the_open_inference_protocol_too(plane: ServingPlane) -> None:
    # ModelInfer's decoder applies them (the interceptor leaves that method to it);
    # the stream, which no unary interceptor sees, gets them the same way.
    stub = oip_grpc.GRPCInferenceServiceStub(
        grpc.intercept_channel(grpc.insecure_channel(plane.address), BearerToken(READER))
    )
    rows = "inputs[x].shape[0]: 9 rows exceed the limit of 8 per request; split the batch"
    err = _error(lambda: stub.ModelInfer(_oip_request(np.ones((9, 16))), timeout=10))
    assert (err.code(), err.details()) == (grpc.StatusCode.INVALID_ARGUMENT, rows)
    huge = oip_pb2.ModelInferRequest(model_name="open")
    huge.inputs.add(name="x", datatype="FP32", shape=[1, 2**40])
    err = _error(lambda: stub.ModelInfer(huge, timeout=10))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"inputs[x].shape: {2**40} elements exceed the limit of 100 per tensor",
    )
    answers = list(
        stub.ModelStreamInfer(
            iter([_oip_request(np.ones((9, 16))), _oip_request(np.ones((2, 16)))]), timeout=10
        )
    )
    assert answers[0].error_message == rows
    assert answers[1].error_message == ""
    assert answers[1].infer_response.id == "r1"
    assert answers[1].infer_response.outputs[0].shape[0] == 2
