"""``modelplane.v1.Tensor`` <-> numpy arrays, on the predict path.

A tensor travels as raw little-endian bytes in row-major order, so decoding is a
``np.frombuffer`` view over the message's bytes (no element-wise copy) after one
length check, and encoding is one ``tobytes``. Every lookup here is a dict hit
on tables built once, because these functions run for every input and output of
every prediction.
"""

from __future__ import annotations

import math

import numpy as np

from modelplane.codec.strings import decode_strings, encode_strings
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import DataType
from modelplane.v1 import tensor_pb2

_WIRE_PREFIX = "DATA_TYPE_"

# Wire enum number <-> domain enum. The wire names are the domain names with a prefix.
_PROTO_TO_DOMAIN: dict[int, DataType] = {
    tensor_pb2.DataType.Value(_WIRE_PREFIX + dtype.name): dtype for dtype in DataType
}
_DOMAIN_TO_PROTO: dict[DataType, tensor_pb2.DataType.ValueType] = {
    dtype: tensor_pb2.DataType.Value(_WIRE_PREFIX + dtype.name) for dtype in DataType
}
# Explicitly little-endian: on a big-endian host these differ from the native
# dtypes, and the wire format is little-endian everywhere.
_DOMAIN_TO_NUMPY: dict[DataType, np.dtype[np.generic]] = {
    dtype: np.dtype(dtype.numpy_name).newbyteorder("<") for dtype in DataType
}
_PROTO_TO_NUMPY: dict[int, np.dtype[np.generic]] = {
    number: _DOMAIN_TO_NUMPY[dtype] for number, dtype in _PROTO_TO_DOMAIN.items()
}
# Keyed by the native dtype, which is what arrays coming out of onnxruntime carry.
_NUMPY_TO_DOMAIN: dict[np.dtype[np.generic], DataType] = {
    np.dtype(dtype.numpy_name): dtype for dtype in DataType
}


_OBJECT = _DOMAIN_TO_NUMPY[DataType.STRING]


def data_type_to_proto(dtype: DataType) -> tensor_pb2.DataType.ValueType:
    return _DOMAIN_TO_PROTO[dtype]


def data_type_from_proto(value: int, field: str) -> DataType:
    """Raises InvalidArgument naming ``field`` for UNSPECIFIED or an unknown number."""
    dtype = _PROTO_TO_DOMAIN.get(value)
    if dtype is None:
        raise InvalidArgument(f"{field}: unknown or unspecified data type {value}")
    return dtype


def numpy_dtype(dtype: DataType) -> np.dtype[np.generic]:
    """The little-endian numpy dtype of a domain data type."""
    return _DOMAIN_TO_NUMPY[dtype]


def domain_dtype(dtype: np.dtype[np.generic]) -> DataType | None:
    """The domain data type of a numpy dtype, in either byte order; None if unsupported."""
    return _NUMPY_TO_DOMAIN.get(dtype) or _NUMPY_TO_DOMAIN.get(dtype.newbyteorder("="))


_MAX_ELEMENTS = 2**48  # far beyond any real tensor, far below numpy's limit


def tensor_to_array(tensor: tensor_pb2.Tensor) -> np.ndarray:
    """A read-only array viewing the tensor's bytes.

    Raises InvalidArgument naming the tensor for an unknown data type, a negative
    dimension or a byte count that does not match the shape.
    """
    dtype = _PROTO_TO_NUMPY.get(tensor.dtype)
    if dtype is None:
        raise InvalidArgument(
            f"input '{tensor.name}': unknown or unspecified data type {tensor.dtype}"
        )
    shape = tuple(tensor.shape)
    if shape and min(shape) < 0:
        raise InvalidArgument(
            f"input '{tensor.name}': shape {list(shape)} has a negative dimension"
        )
    count = math.prod(shape)
    # A zero dimension makes the product 0, yet numpy still refuses a shape whose
    # other dimensions overflow its index type: refuse it here, with a message.
    if count > _MAX_ELEMENTS or (
        count == 0 and math.prod(dim for dim in shape if dim) > _MAX_ELEMENTS
    ):
        raise InvalidArgument(
            f"input '{tensor.name}': shape {list(shape)} is too large to describe an array"
        )
    data = tensor.data
    if dtype is _OBJECT:
        # STRING: length-prefixed elements, decoded into str objects (no view possible).
        return decode_strings(data, count, f"input '{tensor.name}'").reshape(shape)
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise InvalidArgument(
            f"input '{tensor.name}': data has {len(data)} bytes, shape {list(shape)} of "
            f"{_PROTO_TO_DOMAIN[tensor.dtype].value} needs {expected}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def tensor_payload(name: str, array: np.ndarray) -> tuple[tensor_pb2.DataType.ValueType, bytes]:
    """``array``'s wire dtype and its little-endian, C-contiguous bytes."""
    dtype = domain_dtype(array.dtype)
    if dtype is None:
        raise InvalidArgument(f"output '{name}': data type {array.dtype} has no wire encoding")
    if dtype is DataType.STRING:
        return _DOMAIN_TO_PROTO[dtype], encode_strings(array)
    wire_dtype = _DOMAIN_TO_NUMPY[dtype]
    if array.dtype != wire_dtype:
        # Only reached for big-endian data: swap to the wire byte order.
        array = array.astype(wire_dtype)
    # tobytes() writes C order whatever the array's layout, so no separate
    # ascontiguousarray pass is needed.
    return _DOMAIN_TO_PROTO[dtype], array.tobytes(order="C")


def array_to_tensor(name: str, array: np.ndarray) -> tensor_pb2.Tensor:
    """A tensor message holding ``array`` as little-endian, C-contiguous bytes."""
    dtype, data = tensor_payload(name, array)
    return tensor_pb2.Tensor(name=name, dtype=dtype, shape=array.shape, data=data)
