"""Tensor element types, tensor specs and signatures <-> ``modelplane.v1`` messages."""

from __future__ import annotations

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import DataType, Signature, TensorSpec
from modelplane.v1 import tensor_pb2

_WIRE_PREFIX = "DATA_TYPE_"


def data_type_to_proto(dtype: DataType) -> tensor_pb2.DataType.ValueType:
    # The wire enum is the domain enum's names with a prefix, so map by name.
    return tensor_pb2.DataType.Value(_WIRE_PREFIX + dtype.name)


def data_type_from_proto(value: int, field: str = "dtype") -> DataType:
    """Raises InvalidArgument for UNSPECIFIED or a number this build does not know."""
    try:
        wire_name = tensor_pb2.DataType.Name(tensor_pb2.DataType.ValueType(value))
    except ValueError:
        raise InvalidArgument(f"{field}: unknown data type {value}") from None
    name = wire_name.removeprefix(_WIRE_PREFIX)
    if name not in DataType.__members__:
        raise InvalidArgument(f"{field}: a data type is required, got {wire_name}")
    return DataType[name]


def tensor_spec_to_proto(spec: TensorSpec) -> tensor_pb2.TensorSpec:
    return tensor_pb2.TensorSpec(
        name=spec.name, dtype=data_type_to_proto(spec.dtype), shape=list(spec.shape)
    )


def tensor_spec_from_proto(message: tensor_pb2.TensorSpec, field: str = "spec") -> TensorSpec:
    return TensorSpec(
        name=message.name,
        dtype=data_type_from_proto(message.dtype, f"{field}.dtype"),
        shape=tuple(message.shape),
    )


def signature_to_proto(signature: Signature) -> tensor_pb2.Signature:
    return tensor_pb2.Signature(
        inputs=[tensor_spec_to_proto(spec) for spec in signature.inputs],
        outputs=[tensor_spec_to_proto(spec) for spec in signature.outputs],
    )


def signature_from_proto(message: tensor_pb2.Signature, field: str = "signature") -> Signature:
    return Signature(
        inputs=tuple(
            tensor_spec_from_proto(spec, f"{field}.inputs[{i}]")
            for i, spec in enumerate(message.inputs)
        ),
        outputs=tuple(
            tensor_spec_from_proto(spec, f"{field}.outputs[{i}]")
            for i, spec in enumerate(message.outputs)
        ),
    )
