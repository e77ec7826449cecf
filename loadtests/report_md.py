"""Markdown tables of a ``loadtests.bench`` report, for BENCHMARKS.md.

python -m loadtests.report_md loadtests/results/bench-<stamp>.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _cell(value: Any, fmt: str = "") -> str:
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def _pair(run: dict[str, Any]) -> str:
    return f"{_cell(run.get('p50_ms'), '.2f')} / {_cell(run.get('p99_ms'), '.2f')}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**not met**")


def render(report: dict[str, Any]) -> str:
    out: list[str] = []
    m = report["machine"]
    out.append(
        f"Machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs, {m['memory_gb']} GB, "
        f"Linux {m['kernel']}, Python {m['python']}; load average before/after the run "
        f"{[round(x, 1) for x in report['environment']['loadavg_before']]} / "
        f"{[round(x, 1) for x in report['environment']['loadavg_after']]}; "
        f"run took {report.get('elapsed_s', '-')} s."
    )
    closed = report["closed_loop"]["summary"]
    top = report["max_rate"]
    levels = report.get("levels", {})
    out.append("\n### Throughput and latency, tiny model (16 -> 4)\n")
    rows = []
    for name, s in closed.items():
        t = top.get(name, {})
        lv = levels.get(name, {})
        rows.append(
            [
                name,
                _cell(t.get("max_rps"), ".0f"),
                _cell(s["throughput_rps"], ".0f"),
                _cell(s["p50_ms"], ".2f"),
                _cell(s["p99_ms"], ".2f"),
                *[_pair(lv.get(k, {})) for k in ("25%", "50%", "75%")],
                _cell(s.get("cpu_s_per_1k"), ".3f"),
                _cell(s.get("serving_cpu_s_per_1k"), ".3f"),
            ]
        )
    out.append(
        _table(
            [
                "system",
                "max req/s, p99 <= 10 ms (open loop)",
                f"req/s, {report['closed_loop']['concurrency']} in flight (closed)",
                "p50 ms (closed)",
                "p99 ms (closed)",
                "p50 / p99 ms at 25 %",
                "at 50 %",
                "at 75 %",
                "CPU s / 1k req (all processes)",
                "CPU s / 1k req (serving processes)",
            ],
            rows,
        )
    )
    r = report["ratios"]
    out.append("\n### Targets (ratios from this one run)\n")
    trows = []

    def add(label: str, value: float | None, target: str, ok: bool | None) -> None:
        trows.append([label, _cell(value), target, _verdict(ok)])

    v = r.get("max_rate_modelplane_over_bare")
    add(
        "modelplane / bare, max req/s with p99 <= 10 ms",
        v,
        ">= 0.8",
        None if v is None else v >= 0.8,
    )
    v = r.get("closed_throughput_modelplane_over_bare")
    add("modelplane / bare, req/s at 16 in flight", v, ">= 0.8", None if v is None else v >= 0.8)
    for suffix, label in (("bare_uvloop", "bare on uvloop"),):
        v = r.get(f"max_rate_modelplane_over_{suffix}")
        add(f"modelplane / {label}, max req/s with p99 <= 10 ms", v, ">= 0.8",
            None if v is None else v >= 0.8)
        v = r.get(f"closed_throughput_modelplane_over_{suffix}")
        add(f"modelplane / {label}, req/s at 16 in flight", v, ">= 0.8",
            None if v is None else v >= 0.8)
        v = r.get(f"closed_p50_modelplane_over_{suffix}")
        add(f"modelplane / {label}, p50 at 16 in flight", v, "<= 1.3",
            None if v is None else v <= 1.3)
    v = r.get("max_rate_modelplane_over_serve_proxy")
    add(
        "modelplane / serve-proxy, max req/s with p99 <= 10 ms",
        v,
        ">= 5",
        None if v is None else v >= 5,
    )
    v = r.get("closed_throughput_modelplane_over_serve_proxy")
    add("modelplane / serve-proxy, req/s at 16 in flight", v, ">= 5", None if v is None else v >= 5)
    v = r.get("closed_p50_modelplane_over_bare")
    add("modelplane / bare, p50 at 16 in flight", v, "<= 1.3", None if v is None else v <= 1.3)
    v = r.get("p50_at_50pct_modelplane_over_bare")
    add("modelplane / bare, p50 at 50 % of own max", v, "<= 1.3", None if v is None else v <= 1.3)
    plane = report.get("plane", {})
    batching = plane.get("batching", {})
    v = batching.get("batched_over_unbatched")
    add(
        "heavy MLP at 64 in flight, batched / unbatched req/s",
        v,
        ">= 2",
        None if v is None else v >= 2,
    )
    mem = report.get("memory", {})
    for key, m_ in mem.items():
        v = m_.get("replica_over_session_mb")
        add(
            f"replica RSS - onnxruntime session footprint ({key}), MB",
            v,
            "<= 150",
            None if v is None else v <= 150,
        )
    idle = plane.get("control_plane_idle", {})
    v = idle.get("rss_mb")
    add("control plane idle RSS, MB", v, "<= 200", None if v is None else v <= 200)
    route = plane.get("route_propagation", {})
    v = route.get("p99_ms")
    add(
        f"SetRoute -> every replica serving, p99 ms ({route.get('changes')} changes, "
        f"{route.get('replicas')} replicas)",
        v,
        "<= 100",
        None if v is None else v <= 100,
    )
    up = report.get("startup", {}).get("modelplane_up", {})
    v = up.get("first_prediction_s")
    add("`modelplane up` to first prediction, s", v, "<= 20", None if v is None else v <= 20)
    out.append(_table(["figure", "measured", "target", ""], trows))

    out.append("\n### Memory\n")
    mrows = []
    for key, m_ in mem.items():
        mrows.append(
            [
                key,
                _cell(m_.get("ort_interpreter_rss_mb")),
                _cell(m_.get("ort_session_rss_mb")),
                _cell(m_.get("modelplane_replica_rss_mb")),
                _cell(m_.get("bare_serving_rss_mb")),
                _cell(m_.get("serve-proxy_serving_rss_mb")),
            ]
        )
    out.append(
        _table(
            [
                "models",
                "bare interpreter RSS MB",
                "python + onnxruntime + sessions RSS MB",
                "modelplane replica RSS MB",
                "bare server RSS MB",
                "serve-proxy replica + proxy RSS MB",
            ],
            mrows,
        )
    )

    out.append("\n### Control plane and rollout\n")
    crows = []
    if up:
        crows.append(["`modelplane up` spawn to `ready`", f"{up['ready_s']} s"])
        crows.append(
            [
                "`modelplane up` spawn to first prediction (register + route incl.)",
                f"{up['first_prediction_s']} s",
            ]
        )
    if idle:
        crows.append(
            ["control plane (`modelplane control-plane`) idle RSS", f"{idle['rss_mb']} MB"]
        )
    served = plane.get("register_to_served", {})
    if served:
        crows.append(
            [
                f"end of `register` to first request served by the new version, on every replica "
                f"({served['rounds']} versions, pinned Predict)",
                f"median {served['median_ms']} ms, max {served['max_ms']} ms",
            ]
        )
    if route:
        crows.append(
            [
                "SetRoute returned to every replica serving the new route",
                f"p50 {route['p50_ms']} ms, p99 {route['p99_ms']} ms, max {route['max_ms']} ms",
            ]
        )
    out.append(_table(["figure", "value"], crows))
    if batching.get("summary"):
        out.append("\n### Heavy MLP (4 x 1024), 64 in flight\n")
        brows = [
            [
                n,
                _cell(s["throughput_rps"], ".0f"),
                _cell(s["p50_ms"], ".1f"),
                _cell(s["p99_ms"], ".1f"),
            ]
            for n, s in batching["summary"].items()
        ]
        out.append(_table(["replica", "req/s", "p50 ms", "p99 ms"], brows))
    elif batching.get("skipped"):
        out.append(f"\nHeavy MLP batching: {batching['skipped']}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("report", type=Path)
    args = parser.parse_args(argv)
    print(render(json.loads(args.report.read_text())))


if __name__ == "__main__":
    main()
