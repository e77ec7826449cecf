"""PNG plots of a ``loadtests.bench`` report.

- ``latency_vs_throughput.png``: p50 and p99 against completed req/s, every open-loop
  run (rate-search probes and the 25/50/75 % levels), one colour per system;
- ``latency_over_time.png``: p50/p99 per second of each system's 75 % level run;
- ``max_throughput.png``: the highest rate with p99 <= 10 ms and CPU per 1,000 requests.

    python -m loadtests.plots results/bench-<stamp>.json [--out loadtests/plots]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

COLOURS = {
    "floor": "grey",
    "bare": "tab:blue",
    "bare-uvloop": "tab:cyan",
    "modelplane": "tab:green",
    "serve-proxy": "tab:red",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    return plt


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, probes in report.get("probes", {}).items():
        runs = [*probes, *report.get("levels", {}).get(name, {}).values()]
        runs = sorted((r for r in runs if r.get("p99_ms")), key=lambda r: r["throughput_rps"])
        xs = [r["throughput_rps"] for r in runs]
        colour = COLOURS.get(name)
        ax.plot(xs, [r["p99_ms"] for r in runs], "o-", color=colour, label=f"{name} p99")
        ax.plot(xs, [r["p50_ms"] for r in runs], "x--", color=colour, label=f"{name} p50")
    ax.axhline(10.0, color="black", linewidth=0.8, linestyle=":", label="p99 bound 10 ms")
    ax.set_yscale("log")
    ax.set_xlabel("completed requests / s (open loop, Poisson arrivals)")
    ax.set_ylabel("latency from intended send, ms")
    ax.set_title("Latency vs throughput, tiny model (same run, same client)")
    ax.legend(fontsize=7)
    written.append(_save(fig, out_dir / "latency_vs_throughput.png"))

    levels = report.get("levels", {})
    if levels:
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, by_level in levels.items():
            timeline = by_level.get("75%", {}).get("timeline", [])
            if not timeline:
                continue
            secs = [row["second"] for row in timeline]
            colour = COLOURS.get(name)
            p99 = [row["p99_ms"] for row in timeline]
            p50 = [row["p50_ms"] for row in timeline]
            ax.plot(secs, p99, "-", color=colour, label=f"{name} p99")
            ax.plot(secs, p50, ":", color=colour, label=f"{name} p50")
        ax.set_yscale("log")
        ax.set_xlabel("second of the measurement")
        ax.set_ylabel("latency, ms")
        ax.set_title("Latency over time at 75 % of each system's own maximum")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:  # no system reached a rate with p99 <= 10 ms: nothing to show over time
            ax.text(0.5, 0.5, "no 75 % level run", ha="center", transform=ax.transAxes)
        written.append(_save(fig, out_dir / "latency_over_time.png"))

    top = report.get("max_rate", {})
    closed = report.get("closed_loop", {}).get("summary", {})
    if top:
        names = list(top)
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.bar(names, [top[n]["max_rps"] or 0 for n in names],
                 color=[COLOURS.get(n, "black") for n in names])
        left.set_title("max req/s with p99 <= 10 ms")
        cpu = [closed.get(n, {}).get("cpu_s_per_1k") or 0 for n in names]
        right.bar(names, cpu, color=[COLOURS.get(n, "black") for n in names])
        right.set_title("CPU-seconds per 1,000 requests (closed loop)")
        for axis in (left, right):
            axis.tick_params(axis="x", labelsize=8)
        written.append(_save(fig, out_dir / "max_throughput.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "plots")
    args = parser.parse_args(argv)
    for path in write_plots(json.loads(args.report.read_text()), args.out):
        print(path)


if __name__ == "__main__":
    main()
