from __future__ import annotations

import pytest

from modelplane.codec.registry import (
    alias_from_proto,
    alias_to_proto,
    model_from_proto,
    model_to_proto,
    timestamp_from_ms,
    timestamp_to_ms,
    version_from_proto,
    version_to_proto,
)
from modelplane.codec.signatures import (
    data_type_from_proto,
    data_type_to_proto,
    signature_from_proto,
    signature_to_proto,
)
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import (
    Alias,
    DataType,
    Model,
    ModelVersion,
    Signature,
    TensorSpec,
    VersionStatus,
)
from modelplane.v1 import registry_pb2, tensor_pb2

SIGNATURE = Signature(
    inputs=(
        TensorSpec("x", DataType.FLOAT32, (-1, 16)),
        TensorSpec("mask", DataType.BOOL, (-1,)),
    ),
    outputs=(TensorSpec("y", DataType.FLOAT64, (-1, 4)),),
)


@pytest.mark.parametrize("dtype", list(DataType))
def test_every_data_type_round_trips(dtype: DataType) -> None:
    wire = data_type_to_proto(dtype)
    assert tensor_pb2.DataType.Name(wire) == f"DATA_TYPE_{dtype.name}"
    assert data_type_from_proto(wire) is dtype


def test_unspecified_data_type_is_rejected_naming_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"inputs\[0\]\.dtype: a data type is required"):
        data_type_from_proto(tensor_pb2.DATA_TYPE_UNSPECIFIED, "inputs[0].dtype")


def test_unknown_data_type_number_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="dtype: unknown data type 99"):
        data_type_from_proto(99)


def test_signature_round_trips() -> None:
    message = signature_to_proto(SIGNATURE)
    assert [spec.name for spec in message.inputs] == ["x", "mask"]
    assert list(message.inputs[0].shape) == [-1, 16]
    assert signature_from_proto(message) == SIGNATURE


def test_timestamp_keeps_milliseconds() -> None:
    stamp = timestamp_from_ms(1_700_000_123_456)
    assert stamp.seconds == 1_700_000_123
    assert stamp.nanos == 456_000_000
    assert timestamp_to_ms(stamp) == 1_700_000_123_456


def test_model_round_trips() -> None:
    model = Model(
        name="fraud",
        description="card fraud",
        created_at_ms=1_700_000_000_001,
        latest_version=3,
        aliases={"prod": 2, "canary": 3},
    )
    message = model_to_proto(model)
    assert message.aliases["prod"] == 2
    assert model_from_proto(message) == model


def test_version_round_trips() -> None:
    version = ModelVersion(
        model="fraud",
        version=7,
        sha256="ab" * 32,
        size_bytes=1234,
        signature=SIGNATURE,
        status=VersionStatus.READY,
        description="retrained",
        created_at_ms=1_700_000_000_999,
    )
    message = version_to_proto(version)
    assert message.status == registry_pb2.VERSION_STATUS_READY
    assert version_from_proto(message) == version


def test_version_with_unspecified_status_is_rejected() -> None:
    message = registry_pb2.ModelVersion(model="fraud", version=1)
    with pytest.raises(InvalidArgument, match="status: a version status is required"):
        version_from_proto(message)


def test_alias_round_trips() -> None:
    alias = Alias(model="fraud", alias="prod", version=4)
    assert alias_from_proto(alias_to_proto(alias)) == alias
