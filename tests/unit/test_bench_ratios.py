"""The benchmark's target ratios, from a report's figures (pure arithmetic)."""

from __future__ import annotations

from typing import Any

import pytest

from loadtests.bench import FLOOR, UVLOOP_REFERENCE, ratios


def _report(systems: dict[str, tuple[float, float, float]]) -> dict[str, Any]:
    """systems: name -> (closed-loop req/s, closed-loop p50 ms, max req/s with p99 <= 10 ms)."""
    return {
        "closed_loop": {
            "summary": {
                name: {"throughput_rps": rps, "p50_ms": p50} for name, (rps, p50, _) in
                systems.items()
            }
        },
        "max_rate": {name: {"max_rps": top} for name, (_, _, top) in systems.items()},
        "levels": {
            name: {"50%": {"p50_ms": p50 * 0.5}} for name, (_, p50, _) in systems.items()
            if name != FLOOR
        },
    }


BOTH_REFERENCES = (
    {
        FLOOR: (10_000.0, 0.05, 10_000.0),
        "bare": (1_500.0, 3.0, 1_000.0),
        UVLOOP_REFERENCE: (1_600.0, 2.5, 1_250.0),
        "modelplane": (1_200.0, 3.6, 800.0),
    },
    {
        "closed_throughput_modelplane_over_bare": 0.8,
        "closed_p50_modelplane_over_bare": 1.2,
        "max_rate_modelplane_over_bare": 0.8,
        "p50_at_50pct_modelplane_over_bare": 1.2,
        "closed_throughput_modelplane_over_bare_uvloop": 0.75,
        "closed_p50_modelplane_over_bare_uvloop": 1.44,
        "max_rate_modelplane_over_bare_uvloop": 0.64,
        "p50_at_50pct_modelplane_over_bare_uvloop": 1.44,
        "closed_throughput_bare_over_floor": 0.15,
    },
)
# Without the uvloop reference only the asyncio ratios appear.
ASYNCIO_ONLY = (
    {
        FLOOR: (10_000.0, 0.05, 10_000.0),
        "bare": (1_000.0, 2.0, 900.0),
        "modelplane": (900.0, 2.0, 450.0),
    },
    {
        "closed_throughput_modelplane_over_bare": 0.9,
        "closed_p50_modelplane_over_bare": 1.0,
        "max_rate_modelplane_over_bare": 0.5,
        "p50_at_50pct_modelplane_over_bare": 1.0,
        "closed_throughput_bare_over_floor": 0.1,
    },
)


@pytest.mark.parametrize(
    ("systems", "expected"), [BOTH_REFERENCES, ASYNCIO_ONLY], ids=["both", "asyncio-only"]
)
def test_modelplane_is_compared_with_every_bare_server_present(
    systems: dict[str, tuple[float, float, float]], expected: dict[str, float]
) -> None:
    assert ratios(_report(systems)) == expected
