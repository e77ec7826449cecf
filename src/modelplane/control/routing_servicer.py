"""RoutingService over gRPC: decode, call the use case, encode."""

from __future__ import annotations

import grpc

from modelplane.codec.routing import (
    fallback_from_proto,
    route_targets_from_proto,
    route_to_proto,
    shadow_targets_from_proto,
)
from modelplane.control.caller import caller
from modelplane.registry.use_cases import Registry
from modelplane.routing.shadow import ShadowTally, merge_books
from modelplane.v1 import routing_pb2, routing_pb2_grpc


def _stats_to_proto(tally: ShadowTally) -> routing_pb2.ShadowStats:
    return routing_pb2.ShadowStats(
        endpoint=tally.endpoint,
        primary_model=tally.primary.model,
        primary_version=tally.primary.version,
        shadow_model=tally.shadow.model,
        shadow_version=tally.shadow.version,
        compared=tally.compared,
        agreed=tally.agreed,
        errors=tally.errors,
        mean_abs_diff=tally.mean_abs_diff,
        max_abs_diff=tally.max_abs_diff,
        replicas=tally.replicas,
    )


class RoutingServicer(routing_pb2_grpc.RoutingServiceServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def SetRoute(
        self, request: routing_pb2.SetRouteRequest, context: grpc.ServicerContext
    ) -> routing_pb2.Route:
        with caller(context):
            route = self._registry.set_route(
                request.endpoint,
                route_targets_from_proto(request.targets),
                request.expected_revision,
                shadows=shadow_targets_from_proto(request.shadows),
                fallback=fallback_from_proto(request),
                sticky_input=request.sticky_input,
            )
        return route_to_proto(route)

    def GetRoute(
        self, request: routing_pb2.GetRouteRequest, context: grpc.ServicerContext
    ) -> routing_pb2.Route:
        return route_to_proto(self._registry.get_route(request.endpoint))

    def ListRoutes(
        self, request: routing_pb2.ListRoutesRequest, context: grpc.ServicerContext
    ) -> routing_pb2.ListRoutesResponse:
        routes = self._registry.list_routes()
        return routing_pb2.ListRoutesResponse(routes=[route_to_proto(r) for r in routes])

    def DeleteRoute(
        self, request: routing_pb2.DeleteRouteRequest, context: grpc.ServicerContext
    ) -> routing_pb2.DeleteRouteResponse:
        with caller(context):
            self._registry.delete_route(request.endpoint, request.expected_revision)
        return routing_pb2.DeleteRouteResponse()

    def Rollback(
        self, request: routing_pb2.RollbackRequest, context: grpc.ServicerContext
    ) -> routing_pb2.Route:
        with caller(context):
            route = self._registry.rollback_route(request.endpoint, request.expected_revision)
        return route_to_proto(route)

    def GetShadowStats(
        self, request: routing_pb2.GetShadowStatsRequest, context: grpc.ServicerContext
    ) -> routing_pb2.GetShadowStatsResponse:
        tallies = merge_books(self._registry.shadow_books(), request.endpoint)
        return routing_pb2.GetShadowStatsResponse(stats=[_stats_to_proto(t) for t in tallies])
