"""Open Inference Protocol tensors <-> numpy: round trips and refusals that name the tensor."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from modelplane.codec.oip import (
    decode_infer_request,
    decode_inputs,
    encode_input,
    parse_version,
    tensor_metadata,
)
from modelplane.codec.strings import decode_strings, encode_strings
from modelplane.codec.tensors import array_to_tensor, tensor_to_array
from modelplane.domain.errors import InvalidArgument, ResourceExhausted
from modelplane.domain.models import DataType, TensorSpec
from modelplane.oip import grpc_service_pb2 as pb

LIMIT = 1 << 20

NUMERIC = [
    (np.bool_, "BOOL"),
    (np.int8, "INT8"),
    (np.int16, "INT16"),
    (np.int32, "INT32"),
    (np.int64, "INT64"),
    (np.uint8, "UINT8"),
    (np.uint16, "UINT16"),
    (np.uint32, "UINT32"),
    (np.uint64, "UINT64"),
    (np.float16, "FP16"),
    (np.float32, "FP32"),
    (np.float64, "FP64"),
]


def _sample(dtype: type) -> np.ndarray:
    values = np.arange(-3, 3).reshape(2, 3)
    if dtype is np.bool_:
        return values > 0
    if np.issubdtype(dtype, np.unsignedinteger):
        return (values + 3).astype(dtype)
    return values.astype(dtype)


@pytest.mark.parametrize(("dtype", "datatype"), NUMERIC)
def test_raw_inputs_round_trip_every_numeric_datatype(dtype: type, datatype: str) -> None:
    array = _sample(dtype)
    request = pb.ModelInferRequest(model_name="m")
    encode_input("x", array, request)
    assert request.inputs[0].datatype == datatype
    (decoded,) = decode_inputs(request, LIMIT).values()
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize(("dtype", "datatype"), NUMERIC)
def test_typed_contents_decode_every_numeric_datatype(dtype: type, datatype: str) -> None:
    array = _sample(dtype)
    field = {
        "BOOL": "bool_contents",
        "INT64": "int64_contents",
        "UINT64": "uint64_contents",
        "FP16": "fp32_contents",
        "FP32": "fp32_contents",
        "FP64": "fp64_contents",
    }.get(datatype, "uint_contents" if datatype.startswith("UINT") else "int_contents")
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype=datatype, shape=[2, 3])
    getattr(tensor.contents, field).extend(array.reshape(-1).tolist())
    request = pb.ModelInferRequest(model_name="m", inputs=[tensor])
    decoded = decode_inputs(request, LIMIT)["x"]
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)


def test_bytes_round_trip_raw_and_typed() -> None:
    texts = np.array([["a", "héllo"], ["", "x" * 300]], dtype=object)
    request = pb.ModelInferRequest(model_name="m")
    encode_input("s", texts, request)
    assert request.inputs[0].datatype == "BYTES"
    raw = request.raw_input_contents[0]
    assert raw[:5] == struct.pack("<I", 1) + b"a"
    np.testing.assert_array_equal(decode_inputs(request, LIMIT)["s"], texts)

    typed = pb.ModelInferRequest.InferInputTensor(name="s", datatype="BYTES", shape=[2, 2])
    typed.contents.bytes_contents.extend(t.encode() for t in texts.reshape(-1))
    decoded = decode_inputs(pb.ModelInferRequest(model_name="m", inputs=[typed]), LIMIT)["s"]
    np.testing.assert_array_equal(decoded, texts)


def test_bf16_raw_widens_exactly_to_fp32() -> None:
    values = np.array([1.0, -2.5, 0.15625], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    tensor = pb.ModelInferRequest.InferInputTensor(name="b", datatype="BF16", shape=[3])
    request = pb.ModelInferRequest(model_name="m", inputs=[tensor], raw_input_contents=[bf16])
    decoded = decode_inputs(request, LIMIT)["b"]
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, values)


def test_bf16_typed_contents_are_refused() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="b", datatype="BF16", shape=[1])
    tensor.contents.fp32_contents.append(1.0)
    with pytest.raises(InvalidArgument, match="input 'b': BF16 has no typed contents"):
        decode_inputs(pb.ModelInferRequest(model_name="m", inputs=[tensor]), LIMIT)


def test_decode_request_reads_naming_outputs_and_accepts_parameters() -> None:
    request = pb.ModelInferRequest(model_name="fraud", model_version="2", id="abc")
    request.parameters["priority"].uint64_param = 1
    request.parameters["timeout"].int64_param = 1000
    request.outputs.add(name="y")
    encode_input("x", np.zeros((1, 2), np.float32), request)
    decoded = decode_infer_request(request, LIMIT)
    assert (decoded.model_name, decoded.version, decoded.request_id) == ("fraud", 2, "abc")
    assert decoded.output_names == ("y",)


@pytest.mark.parametrize("version", ["x", "0", "-1", "1.5"])
def test_bad_version_is_refused(version: str) -> None:
    with pytest.raises(InvalidArgument, match="model_version: expected empty or a version"):
        parse_version(version)


def test_unsupported_datatype_names_the_tensor() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP8", shape=[1])
    with pytest.raises(InvalidArgument, match="input 'x': unsupported datatype 'FP8'"):
        decode_inputs(pb.ModelInferRequest(inputs=[tensor]), LIMIT)


def test_element_count_not_matching_shape_names_the_tensor() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2, 2])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0])
    with pytest.raises(
        InvalidArgument, match=r"input 'x': contents.fp32_contents has 3 elements, shape \[2, 2\]"
    ):
        decode_inputs(pb.ModelInferRequest(inputs=[tensor]), LIMIT)


def test_raw_byte_count_not_matching_shape_names_the_tensor() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2])
    request = pb.ModelInferRequest(inputs=[tensor], raw_input_contents=[b"\0" * 7])
    with pytest.raises(InvalidArgument, match=r"input 'x': raw contents have 7 bytes.*needs 8"):
        decode_inputs(request, LIMIT)


def test_raw_contents_count_not_matching_inputs() -> None:
    request = pb.ModelInferRequest(
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="a", datatype="FP32", shape=[1]),
            pb.ModelInferRequest.InferInputTensor(name="b", datatype="FP32", shape=[1]),
        ],
        raw_input_contents=[b"\0" * 4],
    )
    with pytest.raises(InvalidArgument, match="raw_input_contents: 1 entries for 2 inputs"):
        decode_inputs(request, LIMIT)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00", "input 's': BYTES element 0 has a truncated 4-byte length prefix"),
        (struct.pack("<I", 9) + b"abc", "input 's': BYTES element 0 declares 9 bytes"),
        (struct.pack("<I", 1) + b"a", "input 's': BYTES data holds 1 elements, the shape needs 2"),
        (struct.pack("<I", 1) + b"\xff" + struct.pack("<I", 0), "element 0 is not UTF-8"),
    ],
)
def test_broken_bytes_length_prefix_names_the_tensor(data: bytes, message: str) -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="s", datatype="BYTES", shape=[2])
    with pytest.raises(InvalidArgument, match=message):
        decode_inputs(pb.ModelInferRequest(inputs=[tensor], raw_input_contents=[data]), LIMIT)


def test_oversize_tensor_is_resource_exhausted_naming_it() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="big", datatype="FP64", shape=[1024, 1024])
    with pytest.raises(ResourceExhausted, match=r"input 'big': .* 8388608 bytes, over the limit"):
        decode_inputs(pb.ModelInferRequest(inputs=[tensor]), LIMIT)


def test_out_of_range_typed_value_is_refused() -> None:
    tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="INT8", shape=[1])
    tensor.contents.int_contents.append(300)
    with pytest.raises(InvalidArgument, match=r"input 'x': .* out of the range of INT8"):
        decode_inputs(pb.ModelInferRequest(inputs=[tensor]), LIMIT)


def test_metadata_uses_protocol_datatype_names() -> None:
    specs = [
        TensorSpec("x", DataType.FLOAT32, (-1, 16)),
        TensorSpec("s", DataType.STRING, (-1,)),
    ]
    meta = tensor_metadata(specs)
    assert [(m.name, m.datatype, list(m.shape)) for m in meta] == [
        ("x", "FP32", [-1, 16]),
        ("s", "BYTES", [-1]),
    ]


def test_modelplane_string_tensors_use_the_same_encoding() -> None:
    texts = np.array(["a", "bé", ""], dtype=object)
    tensor = array_to_tensor("s", texts)
    assert tensor.data == encode_strings(texts)
    np.testing.assert_array_equal(tensor_to_array(tensor), texts)
    np.testing.assert_array_equal(decode_strings(tensor.data, 3, "s"), texts)
