"""RegistryService over gRPC: decode, call the use case, encode."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from modelplane.codec.registry import alias_to_proto, model_to_proto, version_to_proto
from modelplane.domain.errors import InvalidArgument
from modelplane.registry.use_cases import Registry
from modelplane.v1 import registry_pb2, registry_pb2_grpc


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

    def CreateModel(
        self, request: registry_pb2.CreateModelRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Model:
        return model_to_proto(self._registry.create_model(request.name, request.description))

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
        version = self._registry.register_version(
            header.model, header.description, header.create_model, _chunks(request_iterator)
        )
        return version_to_proto(version)

    def GetVersion(
        self, request: registry_pb2.GetVersionRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ModelVersion:
        return version_to_proto(self._registry.get_version(request.model, request.version))

    def ListVersions(
        self, request: registry_pb2.ListVersionsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListVersionsResponse:
        versions = self._registry.list_versions(request.model)
        return registry_pb2.ListVersionsResponse(versions=[version_to_proto(v) for v in versions])

    def SetAlias(
        self, request: registry_pb2.SetAliasRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Alias:
        alias = self._registry.set_alias(request.model, request.alias, request.version)
        return alias_to_proto(alias)

    def GetAlias(
        self, request: registry_pb2.GetAliasRequest, context: grpc.ServicerContext
    ) -> registry_pb2.Alias:
        return alias_to_proto(self._registry.get_alias(request.model, request.alias))

    def DeleteAlias(
        self, request: registry_pb2.DeleteAliasRequest, context: grpc.ServicerContext
    ) -> registry_pb2.DeleteAliasResponse:
        self._registry.delete_alias(request.model, request.alias)
        return registry_pb2.DeleteAliasResponse()
