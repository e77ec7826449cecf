"""ModelInfer answers written to wire bytes parse to the message the protocol defines."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelplane.codec.oip import decode_outputs
from modelplane.codec.oip_wire import InferResponseEncoder, stream_response, varint
from modelplane.oip import grpc_service_pb2 as pb

CONSTANT_KEYS = ("modelplane.model", "modelplane.endpoint")
PREDICTION_ID_KEY = "modelplane.prediction_id"

_DTYPES = st.sampled_from(
    [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64,
     np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]
)
_ARRAYS = _DTYPES.flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=20))
)
_TEXT = st.text(max_size=40)


def _expected(
    outputs: dict[str, np.ndarray],
    model_name: str,
    version: int,
    request_id: str,
    constants: tuple[str, str],
    prediction_id: str,
) -> pb.ModelInferResponse:
    """The same answer built as a message, field by field."""
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=str(version), id=request_id
    )
    for key, value in zip(CONSTANT_KEYS, constants, strict=True):
        response.parameters[key].string_param = value
    if prediction_id:
        response.parameters[PREDICTION_ID_KEY].string_param = prediction_id
    for name, array in outputs.items():
        datatype = {np.dtype(np.bool_): "BOOL"}.get(array.dtype) or (
            ("FP" if array.dtype.kind == "f" else "UINT" if array.dtype.kind == "u" else "INT")
            + str(array.dtype.itemsize * 8)
        )
        response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        response.raw_output_contents.append(array.tobytes())
    return response


@settings(max_examples=200, deadline=None)
@given(
    outputs=st.dictionaries(st.text(min_size=1, max_size=12), _ARRAYS, min_size=1, max_size=3),
    model_name=_TEXT,
    version=st.integers(min_value=1, max_value=2**40),
    request_id=_TEXT,
    model=_TEXT,
    endpoint=_TEXT,
    prediction_id=_TEXT,
)
def test_encoded_answers_parse_to_the_message_built_field_by_field(
    outputs: dict[str, np.ndarray],
    model_name: str,
    version: int,
    request_id: str,
    model: str,
    endpoint: str,
    prediction_id: str,
) -> None:
    encoder = InferResponseEncoder(PREDICTION_ID_KEY, CONSTANT_KEYS)
    # Twice: the second answer comes from the caches and must be the same.
    for _ in range(2):
        wire = encoder.encode(
            outputs, model_name, version, request_id, (model, endpoint), prediction_id
        )
        parsed = pb.ModelInferResponse.FromString(wire)
        assert parsed == _expected(
            outputs, model_name, version, request_id, (model, endpoint), prediction_id
        )
        for name, array in decode_outputs(parsed).items():
            np.testing.assert_array_equal(array, outputs[name])


def test_response_is_raw_and_decodes_back() -> None:
    outputs = {
        "y": np.arange(6, dtype=np.float32).reshape(2, 3),
        "label": np.array(["a", "bé"], dtype=object),
        "n": np.array([1, 2], dtype=np.int64),
    }
    encoder = InferResponseEncoder(PREDICTION_ID_KEY, CONSTANT_KEYS)
    wire = encoder.encode(outputs, "fraud", 3, "req-1", ("fraud", ""), "p-9")
    response = pb.ModelInferResponse.FromString(wire)
    assert (response.model_name, response.model_version, response.id) == ("fraud", "3", "req-1")
    assert response.parameters[PREDICTION_ID_KEY].string_param == "p-9"
    assert [o.datatype for o in response.outputs] == ["FP32", "BYTES", "INT64"]
    assert len(response.raw_output_contents) == 3
    assert not response.outputs[0].HasField("contents")
    back = decode_outputs(response)
    for name, array in outputs.items():
        np.testing.assert_array_equal(back[name], array)


def test_string_outputs_travel_length_prefixed() -> None:
    encoder = InferResponseEncoder(PREDICTION_ID_KEY, CONSTANT_KEYS)
    words = np.array([["héllo", ""], ["a", "bc"]], dtype=object)
    parsed = pb.ModelInferResponse.FromString(
        encoder.encode({"w": words}, "m", 1, "", ("m", ""), "p-1")
    )
    assert parsed.outputs[0].datatype == "BYTES"
    assert list(parsed.outputs[0].shape) == [2, 2]
    # Each element: a 4-byte little-endian length, then its UTF-8 bytes.
    assert parsed.raw_output_contents[0].startswith(b"\x06\x00\x00\x00h\xc3\xa9llo\x00\x00\x00\x00")
    assert decode_outputs(parsed)["w"].tolist() == [["héllo", ""], ["a", "bc"]]


def test_a_stream_answer_wraps_the_encoded_response() -> None:
    encoder = InferResponseEncoder(PREDICTION_ID_KEY, CONSTANT_KEYS)
    wire = encoder.encode({"y": np.arange(3, dtype=np.float32)}, "ep", 2, "r1", ("m", "ep"), "p")
    streamed = pb.ModelStreamInferResponse.FromString(stream_response(wire))
    assert streamed.error_message == ""
    assert streamed.infer_response == pb.ModelInferResponse.FromString(wire)
    assert streamed.infer_response.id == "r1"


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16_383, 16_384, 2**35, 2**63 - 1])
def test_varints_match_the_reference_encoding(value: int) -> None:
    # A shape dimension is an int64 varint: parse one back through a message.
    tensor = pb.ModelInferResponse.InferOutputTensor.FromString(
        b"\x1a" + varint(len(varint(value))) + varint(value)
    )
    assert list(tensor.shape) == [value]
