"""PredictRequest / PredictResponse <-> the data plane's request shape."""

from __future__ import annotations

import numpy as np
import pytest

from modelplane.codec.inference import decode_predict_request, encode_predict_response
from modelplane.codec.tensors import array_to_tensor
from modelplane.domain.errors import InvalidArgument
from modelplane.v1 import inference_pb2

X = np.arange(32, dtype=np.float32).reshape(2, 16)


def test_endpoint_request() -> None:
    request = inference_pb2.PredictRequest(
        endpoint="fraud", inputs=[array_to_tensor("x", X)], output_names=["y"]
    )
    decoded = decode_predict_request(request)
    assert decoded.endpoint == "fraud"
    assert decoded.model is None
    assert decoded.output_names == ("y",)
    np.testing.assert_array_equal(decoded.inputs["x"], X)


@pytest.mark.parametrize(
    ("ref", "version", "alias"),
    [
        (inference_pb2.ModelRef(model="m", version=3), 3, None),
        (inference_pb2.ModelRef(model="m", alias="prod"), None, "prod"),
        (inference_pb2.ModelRef(model="m"), None, None),
    ],
)
def test_model_request(ref: inference_pb2.ModelRef, version: int | None, alias: str | None) -> None:
    decoded = decode_predict_request(inference_pb2.PredictRequest(model=ref))
    assert (decoded.endpoint, decoded.model, decoded.version, decoded.alias) == (
        None,
        "m",
        version,
        alias,
    )
    assert decoded.output_names == ()


def test_missing_target() -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_predict_request(inference_pb2.PredictRequest(inputs=[array_to_tensor("x", X)]))
    assert caught.value.message == "PredictRequest.target: set endpoint or model"


def test_empty_model_name() -> None:
    request = inference_pb2.PredictRequest(model=inference_pb2.ModelRef(version=1))
    with pytest.raises(InvalidArgument, match=r"^PredictRequest.target.model.model: a model name"):
        decode_predict_request(request)


def test_duplicate_input() -> None:
    tensor = array_to_tensor("x", X)
    request = inference_pb2.PredictRequest(endpoint="e", inputs=[tensor, tensor])
    with pytest.raises(InvalidArgument, match="input 'x' is given twice"):
        decode_predict_request(request)


def test_bad_tensor_error_propagates() -> None:
    tensor = array_to_tensor("x", X)
    tensor.data = tensor.data[:-1]
    with pytest.raises(InvalidArgument, match="input 'x': data has 127 bytes"):
        decode_predict_request(inference_pb2.PredictRequest(endpoint="e", inputs=[tensor]))


def test_encode_response() -> None:
    y = np.ones((2, 4), dtype=np.float32)
    response = encode_predict_response({"y": y}, "fraud", "m", 2, "abc")
    assert (response.endpoint, response.model, response.version, response.prediction_id) == (
        "fraud",
        "m",
        2,
        "abc",
    )
    assert [t.name for t in response.outputs] == ["y"]
    assert list(response.outputs[0].shape) == [2, 4]
    assert response.outputs[0].data == y.tobytes()
