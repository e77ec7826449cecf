"""Routes and their weighted targets <-> ``modelplane.v1`` routing messages."""

from __future__ import annotations

from collections.abc import Iterable

from modelplane.codec.registry import timestamp_from_ms, timestamp_to_ms
from modelplane.domain.models import Route, RouteTarget, ShadowTarget
from modelplane.v1 import routing_pb2


def route_target_to_proto(target: RouteTarget) -> routing_pb2.RouteTarget:
    message = routing_pb2.RouteTarget(
        model=target.model,
        weight=target.weight,
        max_batch_size=target.max_batch_size,
        max_wait_us=target.max_wait_us,
    )
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
        max_batch_size=message.max_batch_size,
        max_wait_us=message.max_wait_us,
    )


def shadow_target_to_proto(shadow: ShadowTarget) -> routing_pb2.ShadowTarget:
    message = routing_pb2.ShadowTarget(model=shadow.model, percent=shadow.percent)
    if shadow.version is not None:
        message.version = shadow.version
    if shadow.alias is not None:
        message.alias = shadow.alias
    return message


def shadow_target_from_proto(message: routing_pb2.ShadowTarget) -> ShadowTarget:
    ref = message.WhichOneof("ref")
    return ShadowTarget(
        model=message.model,
        percent=message.percent,
        version=message.version if ref == "version" else None,
        alias=message.alias if ref == "alias" else None,
    )


def shadow_targets_from_proto(
    messages: Iterable[routing_pb2.ShadowTarget],
) -> tuple[ShadowTarget, ...]:
    return tuple(shadow_target_from_proto(message) for message in messages)


def fallback_from_proto(
    owner: routing_pb2.Route | routing_pb2.SetRouteRequest,
) -> RouteTarget | None:
    """The fallback target, or None when the message has none."""
    if not owner.HasField("fallback"):
        return None
    return route_target_from_proto(owner.fallback)


def route_targets_from_proto(
    messages: Iterable[routing_pb2.RouteTarget],
) -> tuple[RouteTarget, ...]:
    return tuple(route_target_from_proto(message) for message in messages)


def route_to_proto(route: Route) -> routing_pb2.Route:
    message = routing_pb2.Route(
        endpoint=route.endpoint,
        targets=[route_target_to_proto(target) for target in route.targets],
        revision=route.revision,
        updated_at=timestamp_from_ms(route.updated_at_ms),
        shadows=[shadow_target_to_proto(shadow) for shadow in route.shadows],
        sticky_input=route.sticky_input,
    )
    if route.fallback is not None:
        message.fallback.CopyFrom(route_target_to_proto(route.fallback))
    return message


def route_from_proto(message: routing_pb2.Route) -> Route:
    return Route(
        endpoint=message.endpoint,
        targets=route_targets_from_proto(message.targets),
        revision=message.revision,
        updated_at_ms=timestamp_to_ms(message.updated_at),
        shadows=shadow_targets_from_proto(message.shadows),
        fallback=fallback_from_proto(message),
        sticky_input=message.sticky_input,
    )
