"""Routes and their weighted targets <-> ``modelplane.v1`` routing messages."""

from __future__ import annotations

from collections.abc import Iterable

from modelplane.codec.registry import timestamp_from_ms, timestamp_to_ms
from modelplane.domain.models import Route, RouteTarget
from modelplane.v1 import routing_pb2


def route_target_to_proto(target: RouteTarget) -> routing_pb2.RouteTarget:
    message = routing_pb2.RouteTarget(model=target.model, weight=target.weight)
    # ``ref`` is a oneof: setting only the chosen member keeps "neither" and
    # "version 0" distinguishable on the wire.
    if target.version is not None:
        message.version = target.version
    if target.alias is not None:
        message.alias = target.alias
    return message


def route_target_from_proto(message: routing_pb2.RouteTarget) -> RouteTarget:
    """Decodes as sent; whether exactly one of version/alias is set is the use case's check."""
    ref = message.WhichOneof("ref")
    return RouteTarget(
        model=message.model,
        weight=message.weight,
        version=message.version if ref == "version" else None,
        alias=message.alias if ref == "alias" else None,
    )


def route_targets_from_proto(
    messages: Iterable[routing_pb2.RouteTarget],
) -> tuple[RouteTarget, ...]:
    return tuple(route_target_from_proto(message) for message in messages)


def route_to_proto(route: Route) -> routing_pb2.Route:
    return routing_pb2.Route(
        endpoint=route.endpoint,
        targets=[route_target_to_proto(target) for target in route.targets],
        revision=route.revision,
        updated_at=timestamp_from_ms(route.updated_at_ms),
    )


def route_from_proto(message: routing_pb2.Route) -> Route:
    return Route(
        endpoint=message.endpoint,
        targets=route_targets_from_proto(message.targets),
        revision=message.revision,
        updated_at_ms=timestamp_to_ms(message.updated_at),
    )
