"""The highest open-loop (Poisson) arrival rate a system sustains within a p99 bound.

A rate passes when no request failed, the system completed at least ``keep_up`` of
the arrivals inside the window (it kept up) and p99 - measured from each request's
intended send time, so queueing counts - stayed within the bound. The search starts
from a closed-loop ceiling and bisects between the best passing and the lowest failing
rate; every probe is kept, for the latency-vs-throughput plot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loadtests.loadgen import LoadSpec, Target, run_load

Say = Callable[[str], None]


def passes(result: dict[str, Any], rate: float, p99_limit_ms: float, keep_up: float) -> bool:
    p99 = result.get("p99_ms")
    return (
        result["errors"] == 0
        and p99 is not None
        and p99 <= p99_limit_ms
        and result["throughput_rps"] >= keep_up * rate
    )


def open_loop(
    target: Target, rate: float, seconds: float, warmup_s: float, processes: int
) -> dict[str, Any]:
    spec = LoadSpec(
        mode="open",
        rate=rate,
        # A cap on outstanding requests so a collapsing system cannot exhaust memory;
        # high enough that overload shows as latency, not as a throttled client.
        concurrency=256,
        duration_s=seconds,
        warmup_s=warmup_s,
        processes=processes,
    )
    return run_load(target, spec)


def max_rate(
    target: Target,
    ceiling_rps: float,
    *,
    p99_limit_ms: float = 10.0,
    probe_s: float = 3.0,
    warmup_s: float = 1.0,
    steps: int = 5,
    processes: int = 2,
    keep_up: float = 0.9,
    say: Say = print,
) -> dict[str, Any]:
    """Bisect for the highest passing rate, starting at 70 % of ``ceiling_rps``."""
    probes: list[dict[str, Any]] = []
    good, bad = 0.0, ceiling_rps * 1.15
    best: dict[str, Any] | None = None
    rate = max(ceiling_rps * 0.7, 1.0)
    for _ in range(steps):
        result = open_loop(target, rate, probe_s, warmup_s, processes)
        ok = passes(result, rate, p99_limit_ms, keep_up)
        result["offered_rps"] = round(rate, 1)
        result["passed"] = ok
        probes.append(result)
        say(
            f"    {rate:8.0f}/s offered: {result['throughput_rps']:8.0f}/s done, "
            f"p99 {result['p99_ms']} ms {'ok' if ok else 'over'}"
        )
        if ok:
            good, best = rate, result
        else:
            bad = rate
        rate = (good + bad) / 2 if good else bad / 2
    return {
        "max_rps": round(good, 1),
        "p99_at_max_ms": best["p99_ms"] if best else None,
        "p50_at_max_ms": best["p50_ms"] if best else None,
        "p99_limit_ms": p99_limit_ms,
        "probes": probes,
    }
