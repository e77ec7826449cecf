"""The replica's per-interval reservoir of slowest requests."""

from __future__ import annotations

import pytest

from modelplane.telemetry.slowest import SlowestPerKey


def test_keeps_the_slowest_per_key_and_drains_afresh() -> None:
    reservoir: SlowestPerKey[str] = SlowestPerKey(2)
    for duration in (5, 1, 9, 3, 7):
        reservoir.offer("a", duration, f"a{duration}")
    reservoir.offer("b", 1, "b1")
    assert sorted(reservoir.drain()) == ["a7", "a9", "b1"]
    assert reservoir.drain() == []


def test_zero_keeps_nothing_and_negative_is_refused() -> None:
    reservoir: SlowestPerKey[str] = SlowestPerKey(0)
    reservoir.offer("a", 1, "x")
    assert reservoir.drain() == []
    with pytest.raises(ValueError, match="per_key must be >= 0, got -1"):
        SlowestPerKey(-1)
