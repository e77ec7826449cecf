"""The highest open-loop (Poisson) arrival rate a system sustains within a p99 bound.

A rate passes when no request failed, the system completed at least ``keep_up`` of
the arrivals inside the window (it kept up) and p99 - measured from each request's
intended send time, so queueing counts - stayed within the bound. The search starts
from a closed-loop ceiling and bisects between the best passing and the lowest failing
rate; every probe is kept, for the latency-vs-throughput plot. Several systems are
searched together, one probe each per step (``max_rates``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


class Bisection:
    """One system's search: the best passing and the lowest failing rate so far."""

    def __init__(self, ceiling_rps: float) -> None:
        self.good, self.bad = 0.0, ceiling_rps * 1.15
        self.rate = max(ceiling_rps * 0.7, 1.0)  # the next rate to probe
        self.best: dict[str, Any] | None = None
        self.probes: list[dict[str, Any]] = []

    def record(self, result: dict[str, Any], ok: bool) -> None:
        result["offered_rps"] = round(self.rate, 1)
        result["passed"] = ok
        self.probes.append(result)
        if ok:
            self.good, self.best = self.rate, result
        else:
            self.bad = self.rate
        self.rate = (self.good + self.bad) / 2 if self.good else self.bad / 2

    def summary(self, p99_limit_ms: float) -> dict[str, Any]:
        return {
            "max_rps": round(self.good, 1),
            "p99_at_max_ms": self.best["p99_ms"] if self.best else None,
            "p50_at_max_ms": self.best["p50_ms"] if self.best else None,
            "p99_limit_ms": p99_limit_ms,
            "probes": self.probes,
        }


Probe = Callable[[Target, float], dict[str, Any]]


def max_rates(
    targets: Mapping[str, Target],
    ceilings_rps: Mapping[str, float],
    *,
    p99_limit_ms: float = 10.0,
    probe_s: float = 3.0,
    warmup_s: float = 1.0,
    steps: int = 5,
    processes: int = 2,
    keep_up: float = 0.9,
    say: Say = print,
    probe: Probe | None = None,
) -> dict[str, dict[str, Any]]:
    """Every system's highest passing rate, the searches interleaved step by step.

    Each bisection step probes every system once, the order rotated each step,
    so the systems meet the shared machine's slow moments alike: searched one
    after another, a few bad seconds during one system's probes halved its
    figure alone (the same code measured 0.65x and 1.06x the bare server in two
    runs ten minutes apart). ``probe`` runs one open-loop window (a test double
    in unit tests).
    """
    run_probe: Probe = probe or (
        lambda target, rate: open_loop(target, rate, probe_s, warmup_s, processes)
    )
    names = list(targets)
    searches = {name: Bisection(ceilings_rps[name]) for name in names}
    for step in range(steps):
        shift = step % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            search = searches[name]
            rate = search.rate
            result = run_probe(targets[name], rate)
            ok = passes(result, rate, p99_limit_ms, keep_up)
            search.record(result, ok)
            say(
                f"    {name:16s} {rate:8.0f}/s offered: {result['throughput_rps']:8.0f}/s "
                f"done, p99 {result['p99_ms']} ms {'ok' if ok else 'over'}"
            )
    return {name: search.summary(p99_limit_ms) for name, search in searches.items()}
