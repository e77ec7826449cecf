"""The interleaved p99-bounded rate search (pure logic; the probe is a stand-in)."""

from __future__ import annotations

from typing import Any

from loadtests.loadgen import Target
from loadtests.ratesearch import max_rates


def _probe_against(limits: dict[str, float], calls: list[tuple[str, float]]) -> Any:
    """A system answers within the bound below its limit and falls behind above it."""

    def probe(target: Target, rate: float) -> dict[str, Any]:
        calls.append((target.address, rate))
        within = rate <= limits[target.address]
        return {
            "errors": 0,
            "p99_ms": 4.0 if within else 40.0,
            "p50_ms": 1.0,
            "throughput_rps": rate if within else rate * 0.5,
        }

    return probe


def test_each_step_probes_every_system_once_in_a_rotating_order() -> None:
    calls: list[tuple[str, float]] = []
    targets = {name: Target(name, b"") for name in ("a", "b", "c")}
    max_rates(
        targets, {"a": 1000.0, "b": 1000.0, "c": 1000.0}, steps=3, say=lambda _: None,
        probe=_probe_against({"a": 900.0, "b": 900.0, "c": 900.0}, calls),
    )
    order = [address for address, _ in calls]
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_each_search_bisects_towards_its_own_limit() -> None:
    calls: list[tuple[str, float]] = []
    found = max_rates(
        {"fast": Target("fast", b""), "slow": Target("slow", b"")},
        {"fast": 1000.0, "slow": 1000.0},
        steps=6,
        say=lambda _: None,
        probe=_probe_against({"fast": 900.0, "slow": 300.0}, calls),
    )
    fast, slow = found["fast"], found["slow"]
    # Starts at 70 % of the ceiling; bisects between the best pass and the lowest failure.
    assert fast["probes"][0]["offered_rps"] == 700.0
    assert 800.0 <= fast["max_rps"] <= 900.0
    assert 200.0 <= slow["max_rps"] <= 300.0
    assert slow["p99_at_max_ms"] == 4.0
    assert [p["passed"] for p in slow["probes"]][:2] == [False, False]
    assert len(fast["probes"]) == len(slow["probes"]) == 6


def test_a_system_that_never_passes_reports_zero() -> None:
    found = max_rates(
        {"down": Target("down", b"")}, {"down": 500.0}, steps=3, say=lambda _: None,
        probe=_probe_against({"down": 0.0}, []),
    )
    assert found["down"]["max_rps"] == 0.0
    assert found["down"]["p99_at_max_ms"] is None
