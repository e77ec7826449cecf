from __future__ import annotations

from modelplane.codec.routing import (
    route_from_proto,
    route_target_from_proto,
    route_target_to_proto,
    route_to_proto,
)
from modelplane.domain.models import Route, RouteTarget
from modelplane.v1 import routing_pb2


def test_pinned_target_round_trips_and_sets_only_version() -> None:
    target = RouteTarget(model="fraud", weight=90, version=3)
    message = route_target_to_proto(target)
    assert message.WhichOneof("ref") == "version"
    assert route_target_from_proto(message) == target


def test_alias_target_round_trips_and_sets_only_alias() -> None:
    target = RouteTarget(model="fraud", weight=10, alias="canary")
    message = route_target_to_proto(target)
    assert message.WhichOneof("ref") == "alias"
    assert route_target_from_proto(message) == target


def test_target_without_ref_decodes_to_neither() -> None:
    decoded = route_target_from_proto(routing_pb2.RouteTarget(model="fraud", weight=1))
    assert decoded.version is None
    assert decoded.alias is None


def test_explicit_version_zero_is_kept_distinct_from_unset() -> None:
    message = routing_pb2.RouteTarget(model="fraud", weight=1, version=0)
    assert route_target_from_proto(message).version == 0


def test_route_round_trips() -> None:
    route = Route(
        endpoint="score",
        targets=(
            RouteTarget(model="fraud", weight=90, version=3),
            RouteTarget(model="fraud", weight=10, alias="canary"),
        ),
        revision=5,
        updated_at_ms=1_700_000_000_123,
    )
    message = route_to_proto(route)
    assert message.revision == 5
    assert message.updated_at.ToMilliseconds() == 1_700_000_000_123
    assert route_from_proto(message) == route
