"""Sticky assignment by weighted rendezvous hashing: only the keys that must move do."""

from __future__ import annotations

from collections import Counter

import pytest

from modelplane.domain.errors import FailedPrecondition
from modelplane.domain.models import (
    DataType,
    ModelVersion,
    Route,
    RouteReason,
    RouteTarget,
    ServingSnapshot,
    ShadowTarget,
    Signature,
    TensorSpec,
    VersionKey,
    VersionStatus,
)
from modelplane.routing.table import RouteTable

A, B, C = VersionKey("m", 1), VersionKey("m", 2), VersionKey("m", 3)
KEYS = [f"user-{i}".encode() for i in range(10_000)]


def _version(number: int) -> ModelVersion:
    spec = TensorSpec("x", DataType.FLOAT32, (-1, 16))
    return ModelVersion(
        "m", number, "0" * 64, 1, Signature((spec,), (TensorSpec("y", DataType.FLOAT32, (-1, 4)),)),
        VersionStatus.READY, "", 0,
    )


def _table(weights: dict[int, int], **policy: object) -> RouteTable:
    route = Route(
        "e",
        tuple(RouteTarget("m", w, version=v) for v, w in weights.items()),
        1,
        0,
        **policy,  # type: ignore[arg-type]
    )
    versions = {VersionKey("m", n): _version(n) for n in (1, 2, 3)}
    return RouteTable.from_snapshot(ServingSnapshot({"e": route}, versions, {}, 1))


def _assign(table: RouteTable) -> dict[bytes, VersionKey]:
    route = table.route("e")
    return {key: route.pick(key)[0] for key in KEYS}


def test_a_key_always_gets_the_same_version_and_the_reason_says_sticky() -> None:
    route = _table({1: 50, 2: 50}).route("e")
    for key in KEYS[:200]:
        picks = {route.pick(key) for _ in range(5)}
        assert len(picks) == 1
        assert next(iter(picks))[1] is RouteReason.STICKY
    assert route.pick(None)[1] is RouteReason.WEIGHT


def test_shares_follow_the_weights() -> None:
    counts = Counter(_assign(_table({1: 70, 2: 20, 3: 10})).values())
    assert counts[A] / len(KEYS) == pytest.approx(0.70, abs=0.02)
    assert counts[B] / len(KEYS) == pytest.approx(0.20, abs=0.02)
    assert counts[C] / len(KEYS) == pytest.approx(0.10, abs=0.02)


def test_a_gradual_rollout_only_moves_keys_towards_the_growing_version() -> None:
    previous = _assign(_table({1: 100, 2: 0}))
    assert set(previous.values()) == {A}
    for step in range(1, 11):
        current = _assign(_table({1: 100 - 10 * step, 2: 10 * step}))
        moved = [key for key in KEYS if previous[key] != current[key]]
        # Every move is old -> new: no key comes back, none wanders.
        assert all(previous[key] == A and current[key] == B for key in moved)
        # Only as many keys move as the weight shift demands (10 % of all keys).
        assert len(moved) / len(KEYS) == pytest.approx(0.10, abs=0.02)
        previous = current
    assert set(previous.values()) == {B}


def test_keys_move_only_towards_versions_that_gained_relative_weight() -> None:
    before = _assign(_table({1: 50, 2: 30, 3: 20}))
    after = _assign(_table({1: 30, 2: 30, 3: 40}))  # 20 points from A to C
    moves = Counter((before[key], after[key]) for key in KEYS if before[key] != after[key])
    # C gained against everyone: it keeps all its keys. A lost against everyone:
    # it gains none. B gained against A only: it may take from A, lose to C.
    assert set(moves) <= {(A, C), (A, B), (B, C)}
    assert moves[(A, C)] > moves[(A, B)] > 0
    # Far fewer keys move than a reshuffle would move (about 2/3 of them).
    assert sum(moves.values()) / len(KEYS) < 0.30


def test_shadows_fallback_and_sticky_input_are_resolved() -> None:
    table = _table(
        {1: 100},
        shadows=(ShadowTarget("m", 25.0, version=2),),
        fallback=RouteTarget("m", 0, version=3),
        sticky_input="x",
    )
    route = table.route("e")
    assert [(s.key, s.percent) for s in route.shadows] == [(B, 25.0)]
    assert route.fallback == C
    assert route.sticky_input == "x"
    # Shadows and the fallback are loaded with the route.
    assert table.versions_needed() == {A, B, C}


def test_an_unknown_shadow_is_dropped_without_touching_serving() -> None:
    table = _table({1: 100}, shadows=(ShadowTarget("m", 50.0, version=9),))
    assert table.route("e").shadows == ()
    assert table.pick("e") == A


def test_no_positive_weight_is_failed_precondition_naming_the_endpoint() -> None:
    with pytest.raises(FailedPrecondition) as info:
        _table({1: 0}).route("e").pick(b"k")
    assert info.value.message == (
        "endpoint 'e' has no servable target: no target has a positive weight"
    )
