"""Models, versions and aliases <-> ``modelplane.v1`` registry messages.

Times are carried as integer milliseconds in the domain and as
``google.protobuf.Timestamp`` on the wire.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from modelplane.codec.signatures import signature_from_proto, signature_to_proto
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import (
    Alias,
    AliasChange,
    AuditEvent,
    Lineage,
    Model,
    ModelVersion,
    ServedAt,
    VersionStatus,
)
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


def lineage_to_proto(lineage: Lineage) -> registry_pb2.Lineage:
    return registry_pb2.Lineage(
        source_run_id=lineage.source_run_id,
        dataset_uri=lineage.dataset_uri,
        dataset_hash=lineage.dataset_hash,
        params=dict(lineage.params),
        metrics=dict(lineage.metrics),
        code_commit=lineage.code_commit,
        parent_version=lineage.parent_version,
        tags=dict(lineage.tags),
    )


def lineage_from_proto(message: registry_pb2.Lineage) -> Lineage:
    return Lineage(
        source_run_id=message.source_run_id,
        dataset_uri=message.dataset_uri,
        dataset_hash=message.dataset_hash,
        params=dict(message.params),
        metrics=dict(message.metrics),
        code_commit=message.code_commit,
        parent_version=message.parent_version,
        tags=dict(message.tags),
    )


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
        lineage=lineage_to_proto(version.lineage),
        status_reason=version.status_reason,
        opset=version.opset,
        reference_sha256=version.reference_sha256,
        reference_rtol=version.reference_rtol,
        reference_atol=version.reference_atol,
        artifact_purged_at=(
            timestamp_from_ms(version.artifact_purged_at_ms)
            if version.artifact_purged_at_ms
            else None
        ),
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
        lineage=lineage_from_proto(message.lineage),
        status_reason=message.status_reason,
        opset=message.opset,
        reference_sha256=message.reference_sha256,
        reference_rtol=message.reference_rtol,
        reference_atol=message.reference_atol,
        artifact_purged_at_ms=(
            timestamp_to_ms(message.artifact_purged_at)
            if message.HasField("artifact_purged_at")
            else 0
        ),
    )


def alias_to_proto(alias: Alias) -> registry_pb2.Alias:
    return registry_pb2.Alias(model=alias.model, alias=alias.alias, version=alias.version)


def alias_from_proto(message: registry_pb2.Alias) -> Alias:
    return Alias(model=message.model, alias=message.alias, version=message.version)


def alias_change_to_proto(change: AliasChange) -> registry_pb2.AliasChange:
    return registry_pb2.AliasChange(
        model=change.model,
        alias=change.alias,
        version=change.version,
        previous_version=change.previous_version,
        changed_at=timestamp_from_ms(change.changed_at_ms),
        actor=change.actor,
        reason=change.reason,
        generation=change.generation,
    )


def audit_event_to_proto(event: AuditEvent) -> registry_pb2.AuditEvent:
    return registry_pb2.AuditEvent(
        id=event.event_id,
        time=timestamp_from_ms(event.ts_ms),
        generation=event.generation,
        action=event.action,
        subject=event.subject,
        actor=event.actor,
        reason=event.reason,
        before_json=event.before_json,
        after_json=event.after_json,
        detail_json=event.detail_json,
        model=event.model,
        endpoint=event.endpoint,
    )


def audit_event_from_proto(message: registry_pb2.AuditEvent) -> AuditEvent:
    return AuditEvent(
        event_id=message.id,
        ts_ms=timestamp_to_ms(message.time),
        generation=message.generation,
        action=message.action,
        subject=message.subject,
        actor=message.actor,
        reason=message.reason,
        before_json=message.before_json,
        after_json=message.after_json,
        detail_json=message.detail_json,
        model=message.model,
        endpoint=message.endpoint,
    )


def served_at_to_proto(served: ServedAt) -> registry_pb2.ServedAtResponse:
    return registry_pb2.ServedAtResponse(
        endpoint=served.endpoint,
        revision=served.revision,
        targets=[
            registry_pb2.ServedTarget(
                model=t.model, version=t.version, alias=t.alias or "", weight=t.weight
            )
            for t in served.targets
        ],
    )

