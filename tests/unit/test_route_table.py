"""The route table: weighted picks, alias resolution, not-found messages, merging."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from modelplane.domain.errors import FailedPrecondition, NotFound
from modelplane.domain.models import (
    DataType,
    ModelVersion,
    Route,
    RouteTarget,
    ServingSnapshot,
    Signature,
    TensorSpec,
    VersionKey,
    VersionStatus,
)
from modelplane.routing.table import RouteTable

SIG = Signature(
    inputs=(TensorSpec("x", DataType.FLOAT32, (-1, 16)),),
    outputs=(TensorSpec("y", DataType.FLOAT32, (-1, 4)),),
)


def _version(model: str, number: int) -> ModelVersion:
    return ModelVersion(model, number, "0" * 64, 10, SIG, VersionStatus.READY, "", 0)


def _snapshot(
    routes: dict[str, tuple[RouteTarget, ...]],
    versions: list[tuple[str, int]],
    aliases: dict[tuple[str, str], int] | None = None,
    generation: int = 1,
) -> ServingSnapshot:
    return ServingSnapshot(
        routes={name: Route(name, targets, 1, 0) for name, targets in routes.items()},
        versions={VersionKey(m, v): _version(m, v) for m, v in versions},
        aliases=aliases or {},
        generation=generation,
    )


def test_single_target_always_picked() -> None:
    table = RouteTable.from_snapshot(
        _snapshot({"e": (RouteTarget("m", 100, version=2),)}, [("m", 1), ("m", 2)])
    )
    assert {table.pick("e") for _ in range(50)} == {VersionKey("m", 2)}
    assert table.versions_needed() == {VersionKey("m", 2)}


def test_weights_split_traffic() -> None:
    random.seed(1234)
    table = RouteTable.from_snapshot(
        _snapshot(
            {
                "e": (
                    RouteTarget("m", 90, version=1),
                    RouteTarget("m", 10, version=2),
                    RouteTarget("other", 0, version=1),  # zero weight: no traffic, no load
                )
            },
            [("m", 1), ("m", 2), ("other", 1)],
        )
    )
    counts = Counter(table.pick("e") for _ in range(20_000))
    share = counts[VersionKey("m", 2)] / 20_000
    assert 0.09 <= share <= 0.11
    assert counts[VersionKey("other", 1)] == 0
    assert table.versions_needed() == {VersionKey("m", 1), VersionKey("m", 2)}


def test_alias_target_resolves_through_snapshot_aliases() -> None:
    table = RouteTable.from_snapshot(
        _snapshot(
            {"e": (RouteTarget("m", 1, alias="prod"),)},
            [("m", 1), ("m", 2)],
            aliases={("m", "prod"): 2},
        )
    )
    assert table.pick("e") == VersionKey("m", 2)


def test_dangling_target_is_dropped_and_the_rest_serve() -> None:
    table = RouteTable.from_snapshot(
        _snapshot(
            {"e": (RouteTarget("m", 50, alias="gone"), RouteTarget("m", 50, version=1))},
            [("m", 1)],
        )
    )
    assert {table.pick("e") for _ in range(20)} == {VersionKey("m", 1)}


def test_endpoint_without_servable_target() -> None:
    table = RouteTable.from_snapshot(
        _snapshot({"e": (RouteTarget("m", 100, alias="gone"),)}, [("m", 1)])
    )
    with pytest.raises(FailedPrecondition) as caught:
        table.pick("e")
    assert caught.value.message == (
        "endpoint 'e' has no servable target: alias 'gone' of model 'm' not found"
    )


def test_unknown_endpoint() -> None:
    table = RouteTable.from_snapshot(_snapshot({}, []))
    with pytest.raises(NotFound) as caught:
        table.pick("nope")
    assert caught.value.message == "endpoint 'nope' not found"


def test_resolve_model() -> None:
    table = RouteTable.from_snapshot(
        _snapshot({}, [("m", 1), ("m", 3)], aliases={("m", "prod"): 1})
    )
    assert table.resolve_model("m", 3, None) == VersionKey("m", 3)
    assert table.resolve_model("m", None, "prod") == VersionKey("m", 1)
    assert table.resolve_model("m", None, None) == VersionKey("m", 3)  # latest
    assert table.version_info(VersionKey("m", 3)).version == 3


@pytest.mark.parametrize(
    ("model", "version", "alias", "message"),
    [
        ("x", None, None, "model 'x' not found"),
        ("x", 1, None, "model 'x' not found"),
        ("x", None, "prod", "model 'x' not found"),
        ("m", 2, None, "version 2 of model 'm' not found"),
        ("m", None, "canary", "alias 'canary' of model 'm' not found"),
    ],
)
def test_resolve_model_not_found(
    model: str, version: int | None, alias: str | None, message: str
) -> None:
    table = RouteTable.from_snapshot(_snapshot({}, [("m", 1)]))
    with pytest.raises(NotFound) as caught:
        table.resolve_model(model, version, alias)
    assert caught.value.message == message


def test_keeping_restores_old_routes_for_named_endpoints_only() -> None:
    old = RouteTable.from_snapshot(
        _snapshot(
            {"a": (RouteTarget("m", 1, version=1),), "b": (RouteTarget("m", 1, version=1),)},
            [("m", 1)],
            generation=1,
        )
    )
    new = RouteTable.from_snapshot(
        _snapshot(
            {
                "a": (RouteTarget("m", 1, version=2),),
                "b": (RouteTarget("m", 1, version=2),),
                "c": (RouteTarget("m", 1, version=2),),
            },
            [("m", 2)],  # version 1 no longer listed
            generation=2,
        )
    )
    merged = new.keeping(old, {"a", "c"})
    assert merged.pick("a") == VersionKey("m", 1)
    assert merged.version_info(VersionKey("m", 1)).version == 1
    assert merged.pick("b") == VersionKey("m", 2)
    assert merged.pick("c") == VersionKey("m", 2)  # not in the old table: keeps its new route
    assert merged.generation == 2
    assert merged.versions_needed() == {VersionKey("m", 1), VersionKey("m", 2)}
