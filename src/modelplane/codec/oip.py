"""Open Inference Protocol (KServe v2 / Triton) messages <-> numpy and the domain.

Requests carry tensors either as typed ``contents`` (one repeated field per
element kind) or, as the official clients send them, as ``raw_input_contents``:
one little-endian, row-major byte string per input, in input order. Answers
always go out as ``raw_output_contents``, which is what those clients read.
BYTES elements are length-prefixed (codec/strings.py); BF16 exists only raw and
is widened exactly to FP32, the closest type an ONNX float model takes.

Every check names the tensor and what was expected, so a caller can fix the
request from the message alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelplane.codec.strings import decode_strings, encode_strings, strings_from_list
from modelplane.codec.tensor_limits import check_shape_limits
from modelplane.domain.errors import InvalidArgument, ResourceExhausted
from modelplane.domain.models import DataType, TensorSpec
from modelplane.oip import grpc_service_pb2 as pb

BYTES = "BYTES"
BF16 = "BF16"

# Wire datatype -> little-endian numpy dtype of the tensor as decoded.
_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
SUPPORTED_DATATYPES = (*_NUMPY, BF16, BYTES)
# Bytes per element as sent (BYTES: at least one, for the size check on the shape).
_ITEMSIZE: dict[str, int] = {
    **{name: dtype.itemsize for name, dtype in _NUMPY.items()},
    BF16: 2,
    BYTES: 1,
}

# Which InferTensorContents field holds each datatype's typed elements.
_CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    # The protocol has no 16-bit float field; FP32 values are narrowed.
    "FP16": "fp32_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}

_DOMAIN_TO_WIRE: dict[DataType, str] = {
    DataType.BOOL: "BOOL",
    DataType.INT8: "INT8",
    DataType.INT16: "INT16",
    DataType.INT32: "INT32",
    DataType.INT64: "INT64",
    DataType.UINT8: "UINT8",
    DataType.UINT16: "UINT16",
    DataType.UINT32: "UINT32",
    DataType.UINT64: "UINT64",
    DataType.FLOAT16: "FP16",
    DataType.FLOAT32: "FP32",
    DataType.FLOAT64: "FP64",
    DataType.STRING: BYTES,
}
# Keyed by native-order dtypes, which is what onnxruntime hands back.
_NUMPY_TO_WIRE: dict[np.dtype[Any], str] = {
    dtype.newbyteorder("="): name for name, dtype in _NUMPY.items()
}


@dataclass(frozen=True, slots=True)
class OipInferRequest:
    """A decoded ModelInferRequest, free of protobuf."""

    model_name: str
    # None: let the route decide.
    version: int | None
    request_id: str
    inputs: dict[str, np.ndarray]
    # Empty: every output.
    output_names: tuple[str, ...]


def wire_datatype(dtype: DataType) -> str:
    return _DOMAIN_TO_WIRE[dtype]


def parse_version(version: str, field: str = "model_version") -> int | None:
    """Empty -> None (the route decides); a positive number pins that version."""
    if not version:
        return None
    if not version.isdigit() or int(version) < 1:
        raise InvalidArgument(f"{field}: expected empty or a version number >= 1, got {version!r}")
    return int(version)


def _check_tensor(
    tensor: pb.ModelInferRequest.InferInputTensor,
    max_tensor_bytes: int,
    max_rows: int,
    max_elements: int,
) -> tuple[str, tuple[int, ...], int]:
    """(datatype, shape, element count), refusing what cannot or must not be decoded."""
    name = tensor.name
    datatype = tensor.datatype
    itemsize = _ITEMSIZE.get(datatype)
    if itemsize is None:
        raise InvalidArgument(
            f"input '{name}': unsupported datatype {datatype!r}; expected one of "
            f"{', '.join(SUPPORTED_DATATYPES)}"
        )
    shape = tuple(tensor.shape)
    count = math.prod(shape)
    # The limits' own check (and its message) only when one may be exceeded.
    if (max_rows and shape and shape[0] > max_rows) or (max_elements and count > max_elements):
        check_shape_limits(name, shape, max_rows, max_elements)
    if shape and min(shape) < 0:
        raise InvalidArgument(f"input '{name}': shape {list(shape)} has a negative dimension")
    # Checked on the declared shape, before anything is allocated for it.
    if count * itemsize > max_tensor_bytes:
        raise ResourceExhausted(
            f"input '{name}': shape {list(shape)} of {datatype} is {count * itemsize} bytes, "
            f"over the limit of {max_tensor_bytes}"
        )
    return datatype, shape, count


def _from_raw(name: str, datatype: str, shape: tuple[int, ...], count: int, raw: bytes) -> Any:
    if datatype == BYTES:
        return decode_strings(raw, count, f"input '{name}'").reshape(shape)
    if datatype == BF16:
        if len(raw) != count * 2:
            raise InvalidArgument(
                f"input '{name}': raw contents have {len(raw)} bytes, shape {list(shape)} "
                f"of BF16 needs {count * 2}"
            )
        # bfloat16 is the upper half of a float32: widening is exact.
        halves = np.frombuffer(raw, dtype="<u2").astype("<u4")
        return (halves << 16).view("<f4").reshape(shape)
    dtype = _NUMPY[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidArgument(
            f"input '{name}': raw contents have {len(raw)} bytes, shape {list(shape)} "
            f"of {datatype} needs {expected}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _from_contents(
    name: str, datatype: str, shape: tuple[int, ...], count: int, contents: pb.InferTensorContents
) -> Any:
    if datatype == BF16:
        raise InvalidArgument(
            f"input '{name}': BF16 has no typed contents field; send it in raw_input_contents"
        )
    field = _CONTENTS_FIELD[datatype]
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidArgument(
            f"input '{name}': contents.{field} has {len(values)} elements, shape "
            f"{list(shape)} needs {count}"
        )
    if datatype == BYTES:
        return strings_from_list(list(values), f"input '{name}'").reshape(shape)
    dtype = _NUMPY[datatype]
    if dtype.kind in "iu" and dtype.itemsize < 4:
        # 8- and 16-bit integers travel in 32-bit fields: numpy would wrap a
        # value that does not fit, so check the range first.
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if wide.size and (int(wide.min()) < info.min or int(wide.max()) > info.max):
            raise InvalidArgument(
                f"input '{name}': contents.{field} has a value out of the range of {datatype}"
            )
        return wide.astype(dtype).reshape(shape)
    return np.array(values, dtype=dtype).reshape(shape)


def decode_inputs(
    request: pb.ModelInferRequest, max_tensor_bytes: int, max_rows: int = 0, max_elements: int = 0
) -> dict[str, np.ndarray]:
    """The request's input tensors as numpy arrays, keyed by name.

    ``max_rows`` and ``max_elements`` are the replicas' tensor limits
    (``check_shape_limits``; 0 disables one), checked here while the shapes are
    read anyway instead of in a walk of their own.
    """
    raw = request.raw_input_contents
    tensors = request.inputs
    if raw and len(raw) != len(tensors):
        raise InvalidArgument(
            f"raw_input_contents: {len(raw)} entries for {len(tensors)} inputs "
            f"({', '.join(repr(t.name) for t in tensors)}); expected one per input, in order"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(tensors):
        name = tensor.name
        if not name:
            raise InvalidArgument(f"inputs[{index}].name: every input needs a name")
        if name in inputs:
            raise InvalidArgument(f"input '{name}': given twice")
        datatype, shape, count = _check_tensor(tensor, max_tensor_bytes, max_rows, max_elements)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(
                    f"input '{name}': has contents while the request uses "
                    "raw_input_contents; use one or the other for every input"
                )
            inputs[name] = _from_raw(name, datatype, shape, count, raw[index])
        else:
            inputs[name] = _from_contents(name, datatype, shape, count, tensor.contents)
    return inputs


def decode_infer_request(
    request: pb.ModelInferRequest, max_tensor_bytes: int, max_rows: int = 0, max_elements: int = 0
) -> OipInferRequest:
    if not request.model_name:
        raise InvalidArgument("model_name: a modelplane endpoint or model name is required")
    version = parse_version(request.model_version)
    outputs: list[str] = []
    requested = request.outputs
    # Most requests want every output: iterating over the empty field costs a
    # few µs of a small model's request, testing it hardly anything.
    for index, wanted in enumerate(requested) if requested else ():
        if not wanted.name:
            raise InvalidArgument(f"outputs[{index}].name: every requested output needs a name")
        if "classification" in wanted.parameters:
            raise InvalidArgument(
                f"output '{wanted.name}': the classification extension is not supported"
            )
        if wanted.name not in outputs:
            outputs.append(wanted.name)
    # Request parameters (priority, timeout, sequence ids, ...) are accepted
    # and ignored: scheduling here is by route, not by request priority.
    return OipInferRequest(
        model_name=request.model_name,
        version=version,
        request_id=request.id,
        inputs=decode_inputs(request, max_tensor_bytes, max_rows, max_elements),
        output_names=tuple(outputs),
    )


def encode_output(name: str, array: np.ndarray) -> tuple[str, bytes]:
    """An output's datatype and raw bytes."""
    if array.dtype.kind == "O":
        return BYTES, encode_strings(array)
    # Native little-endian dtypes hit the table directly; others once normalised.
    datatype = _NUMPY_TO_WIRE.get(array.dtype) or _NUMPY_TO_WIRE.get(array.dtype.newbyteorder("="))
    if datatype is None:
        raise InvalidArgument(f"output '{name}': data type {array.dtype} has no wire encoding")
    wire = _NUMPY[datatype]
    if array.dtype != wire:
        array = array.astype(wire)  # big-endian data only
    return datatype, array.tobytes(order="C")


def decode_outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """The arrays a response carries (raw or typed): for tests and clients."""
    out: dict[str, np.ndarray] = {}
    raw = response.raw_output_contents
    for index, tensor in enumerate(response.outputs):
        shape = tuple(tensor.shape)
        count = math.prod(shape)
        if raw:
            out[tensor.name] = _from_raw(tensor.name, tensor.datatype, shape, count, raw[index])
        else:
            out[tensor.name] = _from_contents(
                tensor.name, tensor.datatype, shape, count, tensor.contents
            )
    return out


def tensor_metadata(
    specs: Iterable[TensorSpec],
) -> list[pb.ModelMetadataResponse.TensorMetadata]:
    return [
        pb.ModelMetadataResponse.TensorMetadata(
            name=spec.name, datatype=wire_datatype(spec.dtype), shape=list(spec.shape)
        )
        for spec in specs
    ]


def encode_input(name: str, array: np.ndarray, request: pb.ModelInferRequest) -> None:
    """Appends one input as raw contents, the way the official clients send it."""
    if array.dtype == np.dtype(object):
        datatype, data = BYTES, encode_strings(array)
    else:
        datatype = _NUMPY_TO_WIRE[array.dtype.newbyteorder("=")]
        data = array.astype(_NUMPY[datatype]).tobytes(order="C")
    request.inputs.add(name=name, datatype=datatype, shape=array.shape)
    request.raw_input_contents.append(data)
