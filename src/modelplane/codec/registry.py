"""Models, versions and aliases <-> ``modelplane.v1`` registry messages.

Times are carried as integer milliseconds in the domain and as
``google.protobuf.Timestamp`` on the wire.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from modelplane.codec.signatures import signature_from_proto, signature_to_proto
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import Alias, Model, ModelVersion, VersionStatus
from modelplane.v1 import registry_pb2


def timestamp_from_ms(ms: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def timestamp_to_ms(stamp: Timestamp) -> int:
    return int(stamp.ToMilliseconds())


def model_to_proto(model: Model) -> registry_pb2.Model:
    return registry_pb2.Model(
        name=model.name,
        description=model.description,
        created_at=timestamp_from_ms(model.created_at_ms),
        latest_version=model.latest_version,
        aliases=dict(model.aliases),
    )


def model_from_proto(message: registry_pb2.Model) -> Model:
    return Model(
        name=message.name,
        description=message.description,
        created_at_ms=timestamp_to_ms(message.created_at),
        latest_version=message.latest_version,
        aliases=dict(message.aliases),
    )


def version_status_to_proto(status: VersionStatus) -> registry_pb2.VersionStatus.ValueType:
    return registry_pb2.VersionStatus.Value("VERSION_STATUS_" + status.name)


def version_status_from_proto(value: int, field: str = "status") -> VersionStatus:
    try:
        wire_name = registry_pb2.VersionStatus.Name(registry_pb2.VersionStatus.ValueType(value))
    except ValueError:
        raise InvalidArgument(f"{field}: unknown version status {value}") from None
    name = wire_name.removeprefix("VERSION_STATUS_")
    if name not in VersionStatus.__members__:
        raise InvalidArgument(f"{field}: a version status is required, got {wire_name}")
    return VersionStatus[name]


def version_to_proto(version: ModelVersion) -> registry_pb2.ModelVersion:
    return registry_pb2.ModelVersion(
        model=version.model,
        version=version.version,
        sha256=version.sha256,
        size_bytes=version.size_bytes,
        signature=signature_to_proto(version.signature),
        status=version_status_to_proto(version.status),
        description=version.description,
        created_at=timestamp_from_ms(version.created_at_ms),
    )


def version_from_proto(message: registry_pb2.ModelVersion) -> ModelVersion:
    return ModelVersion(
        model=message.model,
        version=message.version,
        sha256=message.sha256,
        size_bytes=message.size_bytes,
        signature=signature_from_proto(message.signature),
        status=version_status_from_proto(message.status),
        description=message.description,
        created_at_ms=timestamp_to_ms(message.created_at),
    )


def alias_to_proto(alias: Alias) -> registry_pb2.Alias:
    return registry_pb2.Alias(model=alias.model, alias=alias.alias, version=alias.version)


def alias_from_proto(message: registry_pb2.Alias) -> Alias:
    return Alias(model=message.model, alias=message.alias, version=message.version)
