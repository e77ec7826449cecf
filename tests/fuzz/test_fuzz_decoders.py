"""No input makes a decoder fail with anything but a domain error (a defined status)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelplane.codec.inference import decode_predict_request
from modelplane.codec.oip import decode_infer_request
from modelplane.codec.tensors import tensor_to_array
from modelplane.domain.errors import ModelplaneError
from modelplane.oip import grpc_service_pb2 as oip_pb2
from modelplane.security.limits import check_tensor_limits
from modelplane.v1 import inference_pb2, tensor_pb2
from tests.fuzz.strategies import consistent_tensor, message_strategy

FUZZ = settings(
    max_examples=int(os.environ.get("MODELPLANE_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

tensors = message_strategy(tensor_pb2.Tensor.DESCRIPTOR) | consistent_tensor(tensor_pb2.Tensor)


def _decodes_or_refuses(decode: object, message: object) -> object:
    """What ``decode`` returns, or the domain error it refused with; anything else fails."""
    try:
        return decode(message)  # type: ignore[operator]
    except ModelplaneError as refused:
        assert refused.message, "a refusal must say why"
        return refused


@FUZZ
@given(tensors)
def test_tensor_to_array_never_fails_outside_the_domain_errors(tensor: tensor_pb2.Tensor) -> None:
    outcome = _decodes_or_refuses(tensor_to_array, tensor)
    if not isinstance(outcome, ModelplaneError):
        # Decoded: exactly the declared shape, nothing more, nothing less.
        assert outcome.shape == tuple(tensor.shape)  # type: ignore[attr-defined]


@FUZZ
@given(
    message_strategy(inference_pb2.PredictRequest.DESCRIPTOR),
    st.lists(consistent_tensor(tensor_pb2.Tensor), max_size=3),
)
def test_decode_predict_request_never_fails_outside_the_domain_errors(
    request: inference_pb2.PredictRequest, extra: list[tensor_pb2.Tensor]
) -> None:
    request.inputs.extend(extra)
    _decodes_or_refuses(lambda r: check_tensor_limits(r, 1024, 1 << 20), request)
    _decodes_or_refuses(decode_predict_request, request)


@FUZZ
@given(message_strategy(oip_pb2.ModelInferRequest.DESCRIPTOR))
def test_decode_infer_request_never_fails_outside_the_domain_errors(
    request: oip_pb2.ModelInferRequest,
) -> None:
    _decodes_or_refuses(lambda r: decode_infer_request(r, 1 << 20), request)


@pytest.mark.parametrize("shape", [[0, 2**62], [2**62, 0, 2**62], [0, 2**63 - 1]])
def test_zero_sized_tensors_with_absurd_dims_are_refused_or_empty(shape: list[int]) -> None:
    tensor = tensor_pb2.Tensor(name="x", dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=shape)
    outcome = _decodes_or_refuses(tensor_to_array, tensor)
    assert isinstance(outcome, ModelplaneError) or outcome.size == 0  # type: ignore[attr-defined]
