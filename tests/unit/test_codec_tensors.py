"""Tensor <-> numpy round trips for every data type, and the errors for bad tensors."""

from __future__ import annotations

import numpy as np
import pytest

from modelplane.codec.tensors import (
    array_to_tensor,
    data_type_from_proto,
    data_type_to_proto,
    numpy_dtype,
    tensor_to_array,
)
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import DataType
from modelplane.v1 import tensor_pb2


def _sample(dtype: DataType, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 100, size=shape)
    if dtype is DataType.BOOL:
        return values % 2 == 0
    if dtype is DataType.STRING:
        return values.astype(str).astype(object)
    return values.astype(dtype.numpy_name)


@pytest.mark.parametrize("dtype", list(DataType), ids=lambda d: d.value)
@pytest.mark.parametrize("shape", [(2, 3), (4,), (), (0, 5)], ids=str)
def test_round_trip_every_dtype(dtype: DataType, shape: tuple[int, ...]) -> None:
    original = _sample(dtype, shape)
    message = array_to_tensor("t", original)
    assert message.dtype == data_type_to_proto(dtype)
    assert tuple(message.shape) == shape
    wire = tensor_pb2.Tensor.FromString(message.SerializeToString())
    decoded = tensor_to_array(wire)
    assert decoded.dtype == np.dtype(dtype.numpy_name)
    assert decoded.shape == shape
    np.testing.assert_array_equal(decoded, original)


def test_wire_bytes_are_little_endian_row_major() -> None:
    array = np.array([[1, 2], [3, 4]], dtype=">i4").T  # big-endian and not C-contiguous
    message = array_to_tensor("t", array)
    assert message.data == np.array([[1, 3], [2, 4]], dtype="<i4").tobytes()
    assert message.dtype == tensor_pb2.DATA_TYPE_INT32


def test_decoding_is_a_view_without_copy() -> None:
    data = np.arange(8, dtype=np.float32).tobytes()
    array = tensor_to_array(
        tensor_pb2.Tensor(name="x", dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[2, 4], data=data)
    )
    assert not array.flags.owndata
    assert not array.flags.writeable


def test_byte_count_mismatch_names_the_input() -> None:
    tensor = tensor_pb2.Tensor(
        name="x", dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[2, 16], data=b"\0" * 100
    )
    with pytest.raises(InvalidArgument) as caught:
        tensor_to_array(tensor)
    assert caught.value.message == (
        "input 'x': data has 100 bytes, shape [2, 16] of float32 needs 128"
    )


def test_unspecified_dtype_names_the_input() -> None:
    tensor = tensor_pb2.Tensor(name="x", shape=[1], data=b"\0" * 4)
    with pytest.raises(InvalidArgument, match=r"^input 'x': unknown or unspecified data type 0$"):
        tensor_to_array(tensor)


def test_unknown_dtype_number_names_the_input() -> None:
    tensor = tensor_pb2.Tensor(name="x", dtype=99, shape=[1], data=b"\0")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="input 'x': unknown or unspecified data type 99"):
        tensor_to_array(tensor)


def test_negative_dimension_is_rejected() -> None:
    tensor = tensor_pb2.Tensor(name="x", dtype=tensor_pb2.DATA_TYPE_INT8, shape=[-1, 2], data=b"")
    with pytest.raises(InvalidArgument, match=r"input 'x': shape \[-1, 2\] has a negative"):
        tensor_to_array(tensor)


def test_unsupported_output_dtype_names_the_output() -> None:
    with pytest.raises(InvalidArgument, match="output 'y': data type complex64 has no wire"):
        array_to_tensor("y", np.zeros(2, dtype=np.complex64))


def test_data_type_mapping_is_total_and_inverse() -> None:
    for dtype in DataType:
        assert data_type_from_proto(data_type_to_proto(dtype), "f") is dtype
        assert numpy_dtype(dtype) == np.dtype(dtype.numpy_name)
    with pytest.raises(InvalidArgument, match=r"^f: unknown"):
        data_type_from_proto(0, "f")
