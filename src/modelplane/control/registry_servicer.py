"""RegistryService over gRPC: decode, call the use case, encode."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from modelplane.codec.registry import (
    alias_change_to_proto,
    alias_to_proto,
    audit_event_to_proto,
    lineage_from_proto,
    model_to_proto,
    served_at_to_proto,
    timestamp_to_ms,
    version_to_proto,
)
from modelplane.control.caller import caller
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import ModelVersion
from modelplane.registry.retention import Decision, GcPlan
from modelplane.registry.use_cases import Registry
from modelplane.v1 import registry_pb2, registry_pb2_grpc

_PROTO_CACHE_MAX = 200_000


def _chunks(requests: Iterator[registry_pb2.RegisterVersionRequest]) -> Iterator[bytes]:
    """The file's bytes, pulled from the stream as the artifact store writes them."""
    # Message 1 was the header; these are messages 2, 3, ...
    for index, request in enumerate(requests, start=2):
        if request.WhichOneof("part") != "chunk":
            raise InvalidArgument(
                f"header: only the first message may carry the header; message {index} "
                "must carry a chunk"
            )
        yield request.chunk


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._protos: dict[tuple[str, int], tuple[ModelVersion, registry_pb2.ModelVersion]] = {}

    def CreateModel(
        self, request: registry_pb2.CreateModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Model:
        with caller(context):
            model = self._registry.create_model(request.name, request.description)
        return model_to_proto(model)

    def GetModel(
        self, request: registry_pb2.GetModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Model:
        return model_to_proto(self._registry.get_model(request.name))

    def ListModels(
        self, request: registry_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListModelsResponse:
        models = self._registry.list_models()
        return registry_pb2.ListModelsResponse(models=[model_to_proto(m) for m in models])

    def RegisterVersion(
        self,
        request_iterator: Iterator[registry_pb2.RegisterVersionRequest],
        context: grpc.ServicerContext,
    ) -> registry_pb2.ModelVersion:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("header: the first message must carry the header")
        header = first.header
        with caller(context):
            version = self._registry.register_version(
                header.model,
                header.description,
                header.create_model,
                _chunks(request_iterator),
                lineage=lineage_from_proto(header.lineage),
                idempotency_key=header.idempotency_key,
                reference_npz=header.reference_npz,
                reference_rtol=(
                    header.reference_rtol if header.HasField("reference_rtol") else None
                ),
                reference_atol=(
                    header.reference_atol if header.HasField("reference_atol") else None
                ),
                source_uri=header.source_uri,
            )
        return version_to_proto(version)

    def GetVersion(
        self, request: registry_pb2.GetVersionRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ModelVersion:
        return version_to_proto(self._registry.get_version(request.model, request.version))

    def ListVersions(
        self, request: registry_pb2.ListVersionsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListVersionsResponse:
        versions = self._registry.list_versions(request.model, request.where)
        return registry_pb2.ListVersionsResponse(versions=[self._encoded(v) for v in versions])

    def _encoded(self, version: ModelVersion) -> registry_pb2.ModelVersion:
        # The store hands back the same object while a record is unchanged, so
        # identity is a safe key; encoding thousands of versions is the cost of
        # a long listing otherwise.
        key = (version.model, version.version)
        cached = self._protos.get(key)
        if cached is not None and cached[0] is version:
            return cached[1]
        message = version_to_proto(version)
        if len(self._protos) >= _PROTO_CACHE_MAX:
            self._protos.clear()
        self._protos[key] = (version, message)
        return message

    def SetAlias(
        self, request: registry_pb2.SetAliasRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Alias:
        with caller(context):
            alias = self._registry.set_alias(request.model, request.alias, request.version)
        return alias_to_proto(alias)

    def GetAlias(
        self, request: registry_pb2.GetAliasRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Alias:
        return alias_to_proto(self._registry.get_alias(request.model, request.alias))

    def DeleteAlias(
        self, request: registry_pb2.DeleteAliasRequest, context: grpc.ServicerContext
    ) -> registry_pb2.DeleteAliasResponse:
        with caller(context):
            self._registry.delete_alias(request.model, request.alias)
        return registry_pb2.DeleteAliasResponse()

    def ArchiveVersion(
        self, request: registry_pb2.ArchiveVersionRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ModelVersion:
        with caller(context):
            version = self._registry.archive_version(request.model, request.version)
        return version_to_proto(version)

    def DeleteVersion(
        self, request: registry_pb2.DeleteVersionRequest, context: grpc.ServicerContext
    ) -> registry_pb2.DeleteVersionResponse:
        with caller(context):
            self._registry.delete_version(request.model, request.version)
        return registry_pb2.DeleteVersionResponse()

    def VerifyVersion(
        self, request: registry_pb2.GetVersionRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ModelVersion:
        with caller(context):
            version = self._registry.verify_version(request.model, request.version)
        return version_to_proto(version)

    def ListAliasHistory(
        self, request: registry_pb2.ListAliasHistoryRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListAliasHistoryResponse:
        changes = self._registry.alias_history(request.model, request.alias)
        return registry_pb2.ListAliasHistoryResponse(
            changes=[alias_change_to_proto(c) for c in changes]
        )

    def QueryAudit(
        self, request: registry_pb2.QueryAuditRequest, context: grpc.ServicerContext
    ) -> registry_pb2.QueryAuditResponse:
        events = self._registry.query_audit(
            model=request.model,
            endpoint=request.endpoint,
            actor=request.actor,
            action=request.action,
            since_ms=timestamp_to_ms(request.since) if request.HasField("since") else None,
            until_ms=timestamp_to_ms(request.until) if request.HasField("until") else None,
            limit=request.limit,
        )
        return registry_pb2.QueryAuditResponse(events=[audit_event_to_proto(e) for e in events])

    def ServedAt(
        self, request: registry_pb2.ServedAtRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ServedAtResponse:
        if not request.HasField("time"):
            raise InvalidArgument("time: a point in time is required")
        served = self._registry.served_at(request.endpoint, timestamp_to_ms(request.time))
        return served_at_to_proto(served)

    def RetireEndpoint(
        self, request: registry_pb2.RetireEndpointRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RetireEndpointResponse:
        with caller(context):
            revision = self._registry.retire_endpoint(
                request.endpoint, request.expected_revision
            )
        return registry_pb2.RetireEndpointResponse(revision=revision)

    def GcArtifacts(
        self, request: registry_pb2.GcArtifactsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GcArtifactsResponse:
        with caller(context):
            outcome = self._registry.gc_artifacts(dry_run=request.dry_run)
        return gc_to_proto(outcome, request.dry_run)


def gc_to_proto(outcome: GcPlan, dry_run: bool) -> registry_pb2.GcArtifactsResponse:
    def entry(decision: Decision) -> registry_pb2.GcArtifact:
        version = decision.version
        return registry_pb2.GcArtifact(
            model=version.model,
            version=version.version,
            sha256=version.sha256,
            size_bytes=version.size_bytes,
            kept_because=decision.kept_because,
        )

    return registry_pb2.GcArtifactsResponse(
        dry_run=dry_run,
        purged=[entry(d) for d in outcome.purge],
        kept=[entry(d) for d in outcome.keep],
        bytes_freed=outcome.bytes_freed,
    )
