"""Puts the registry and routing services on a sync gRPC server."""

from __future__ import annotations

import grpc

from modelplane.control.registry_servicer import RegistryServicer
from modelplane.control.routing_servicer import RoutingServicer
from modelplane.registry.use_cases import Registry
from modelplane.v1 import registry_pb2_grpc, routing_pb2_grpc


def add_registry_services(server: grpc.Server, registry: Registry) -> None:
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(RegistryServicer(registry), server)
    routing_pb2_grpc.add_RoutingServiceServicer_to_server(RoutingServicer(registry), server)
