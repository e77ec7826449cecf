"""Tensor <-> numpy conversion for the reference servers and the load generator.

Written the way a careful hand-written server would: zero-copy ``np.frombuffer`` on the
request bytes, a size check before reshaping, ``tobytes`` on the way out. Kept apart
from modelplane's own codec on purpose, so the baseline owes nothing to the system it
is compared with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from modelplane.v1 import inference_pb2, tensor_pb2

_DTYPE_BY_ENUM: dict[int, np.dtype[np.generic]] = {
    tensor_pb2.DATA_TYPE_BOOL: np.dtype(np.bool_),
    tensor_pb2.DATA_TYPE_INT8: np.dtype("<i1"),
    tensor_pb2.DATA_TYPE_INT16: np.dtype("<i2"),
    tensor_pb2.DATA_TYPE_INT32: np.dtype("<i4"),
    tensor_pb2.DATA_TYPE_INT64: np.dtype("<i8"),
    tensor_pb2.DATA_TYPE_UINT8: np.dtype("<u1"),
    tensor_pb2.DATA_TYPE_UINT16: np.dtype("<u2"),
    tensor_pb2.DATA_TYPE_UINT32: np.dtype("<u4"),
    tensor_pb2.DATA_TYPE_UINT64: np.dtype("<u8"),
    tensor_pb2.DATA_TYPE_FLOAT16: np.dtype("<f2"),
    tensor_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    tensor_pb2.DATA_TYPE_FLOAT64: np.dtype("<f8"),
}
_ENUM_BY_DTYPE: dict[np.dtype[np.generic], int] = {v: k for k, v in _DTYPE_BY_ENUM.items()}


class TensorError(ValueError):
    """A tensor on the wire that cannot be turned into an array."""


def to_array(tensor: tensor_pb2.Tensor) -> NDArray[np.generic]:
    """Decode a wire tensor without copying its bytes."""
    dtype = _DTYPE_BY_ENUM.get(tensor.dtype)
    if dtype is None:
        raise TensorError(f"inputs[{tensor.name!r}].dtype: unsupported value {tensor.dtype}")
    shape = tuple(tensor.shape)
    expected = math.prod(shape) * dtype.itemsize  # math.prod: np.prod costs ~10 us here
    if len(tensor.data) != expected:
        raise TensorError(
            f"inputs[{tensor.name!r}].data: expected {expected} bytes for shape {list(shape)} "
            f"{dtype.name}, got {len(tensor.data)}"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def to_tensor(name: str, array: NDArray[np.generic]) -> tensor_pb2.Tensor:
    """Encode an array as a little-endian, row-major wire tensor."""
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = _ENUM_BY_DTYPE.get(np.dtype(dtype))
    if code is None:
        raise TensorError(f"{name}: dtype {array.dtype} has no wire equivalent")
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return tensor_pb2.Tensor(name=name, dtype=code, shape=list(array.shape), data=data)  # type: ignore[arg-type]


def predict_request(
    inputs: Mapping[str, NDArray[np.generic]],
    *,
    endpoint: str | None = None,
    model: str | None = None,
    version: int | None = None,
) -> inference_pb2.PredictRequest:
    """A Predict request naming an endpoint, or a model (optionally a pinned version)."""
    if (endpoint is None) == (model is None):
        raise ValueError("name exactly one of endpoint or model")
    tensors = [to_tensor(name, array) for name, array in inputs.items()]
    if endpoint is not None:
        return inference_pb2.PredictRequest(endpoint=endpoint, inputs=tensors)
    ref = inference_pb2.ModelRef(model=model or "")
    if version is not None:
        ref.version = version
    return inference_pb2.PredictRequest(model=ref, inputs=tensors)
