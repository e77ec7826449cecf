"""Every benchmark figure in one run: modelplane against its peers, side by side.

Systems, all on the same ONNX file, loaded by the same client (``loadgen``):

- ``floor``: onnxruntime called in this process (no network, no protobuf);
- ``bare``: a bare ``grpc.aio`` + onnxruntime server, on asyncio's default loop;
- ``bare-uvloop``: the same server on uvloop, the loop Ray gives modelplane's
  replica (``--no-uvloop-reference`` leaves it out);
- ``modelplane``: ``modelplane up`` as a child process, default settings (routing,
  validation, telemetry on);
- ``serve-proxy``: the same model behind Ray Serve's stock gRPC proxy.

Figures: the highest open-loop rate with p99 <= 10 ms; p50/p99 at 25/50/75 % of each
system's own maximum; CPU-seconds per 1,000 requests (server processes' CPU time);
closed-loop throughput and latency at 16 in flight, in rotating rounds; replica RSS
against the onnxruntime session's own footprint; ``modelplane up`` to first
prediction; then, without Ray (``loadtests.plane``): control-plane idle RSS, register
to first served, SetRoute to every replica serving, heavy MLP batched vs unbatched.

    python -m loadtests.bench                  # the full run (make bench), ~10 min
    python -m loadtests.bench --smoke          # seconds: checks the harness, not speed

Writes ``results/bench-<stamp>.json`` and PNG plots into ``loadtests/plots/``. The
machine is shared: compare ratios from one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psutil

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.floor import footprint, run_floor
from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.models import MODELS, write_model
from loadtests.plane import run_plane
from loadtests.predict_vs_bare import _environment, _wait_answer
from loadtests.procs import ServerProcess
from loadtests.ratesearch import max_rates, open_loop
from loadtests.report_file import write_report
from loadtests.sysproc import CpuMeter, machine, matching, process_tree, rss_bytes
from loadtests.tensors import predict_request
from loadtests.up import UpProcess

PLOTS_DIR = Path(__file__).resolve().parent / "plots"
ENDPOINT = "bench"
FLOOR = "floor"
UVLOOP_REFERENCE = "bare-uvloop"
Say = Callable[[str], None]


@dataclass
class System:
    name: str
    address: str
    tree: Callable[[], list[psutil.Process]]
    """Every process the system runs (Ray's included)."""
    serving: Callable[[], list[psutil.Process]]
    """The processes that answer Predict (the replica, the proxy)."""


@dataclass
class Options:
    closed_s: float
    rounds: int
    probe_s: float
    probe_steps: int
    level_s: float
    warmup_s: float
    concurrency: int
    processes: int
    serve_proxy: bool
    modelplane: bool
    plane: bool
    batch_rounds: int
    batch_s: float
    route_changes: int
    register_rounds: int
    large: bool
    level_fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    # The bare server once more on uvloop: the loop Ray gives modelplane's replica.
    uvloop_reference: bool = True


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _cpu_run(system: System, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run`` with the system's CPU time read around it."""
    whole = CpuMeter(system.tree()).start()
    serving = CpuMeter(system.serving()).start()
    result = run()
    whole_s, serving_s = whole.stop(), serving.stop()
    done = max(result["requests"], 1)
    result["cpu_s_per_1k"] = round(whole_s / done * 1000, 4)
    result["serving_cpu_s_per_1k"] = round(serving_s / done * 1000, 4)
    return result


def _order(names: list[str], round_index: int) -> list[str]:
    shift = round_index % len(names)
    return names[shift:] + names[:shift]


def _start_systems(
    stack: ExitStack, opts: Options, model_path: Path, workdir: Path, say: Say
) -> tuple[dict[str, System], dict[str, Any]]:
    x = MODELS["tiny"].sample_input()
    systems: dict[str, System] = {}
    startup: dict[str, Any] = {}
    say("starting bare (grpc.aio + onnxruntime)")
    bare = stack.enter_context(ServerProcess("loadtests.bare_server", ["--model", str(model_path)]))
    bare_proc = psutil.Process(bare.pid)
    systems["bare"] = System("bare", bare.address, lambda: [bare_proc], lambda: [bare_proc])
    if opts.uvloop_reference:
        say("starting bare on uvloop (the event loop modelplane's replica runs on)")
        fast = stack.enter_context(
            ServerProcess("loadtests.bare_server", ["--model", str(model_path), "--loop", "uvloop"])
        )
        fast_proc = psutil.Process(fast.pid)
        systems[UVLOOP_REFERENCE] = System(
            UVLOOP_REFERENCE, fast.address, lambda: [fast_proc], lambda: [fast_proc]
        )
    if opts.modelplane:
        say("starting modelplane: `modelplane up` (Redis, control plane, Ray, Serve data plane)")
        up = _start_up(workdir / "modelplane", say)
        stack.callback(up.stop)
        first = up.serve("bench-tiny", ENDPOINT, model_path, x)
        startup["modelplane_up"] = {
            "ready_s": round(up.ready_s, 2),
            "first_prediction_s": round(first, 2),
            "target_s": 20.0,
        }
        say(f"  ready in {up.ready_s:.1f} s, first prediction {first:.1f} s after spawn")
        pid = up.pid
        systems["modelplane"] = System(
            "modelplane",
            up.inference_address,
            lambda: process_tree(pid),
            lambda: matching(pid, "ServeReplica"),
        )
        startup["_up"] = up
    if opts.serve_proxy:
        say("starting Ray Serve stock gRPC proxy (own Ray, num_cpus=2)")
        serve = stack.enter_context(
            ServerProcess(
                "loadtests.ray_serve_proxy",
                ["--model", str(model_path)],
                startup_timeout=240.0,
                stop_timeout=90.0,
            )
        )
        serve_pid = serve.pid
        systems["serve-proxy"] = System(
            "serve-proxy",
            serve.address,
            lambda: process_tree(serve_pid),
            lambda: matching(serve_pid, "ServeReplica") + matching(serve_pid, "ProxyActor"),
        )
    return systems, startup


def _start_up(data_dir: Path, say: Say, attempts: int = 2) -> UpProcess:
    """``modelplane up``, retried once: on a loaded machine Ray's own start-up check
    (30 s for the raylet to register) can fail before modelplane runs at all."""
    for attempt in range(1, attempts + 1):
        try:
            return UpProcess(data_dir).start()
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            say(f"  `modelplane up` failed to start ({str(exc).splitlines()[-1]}); retrying")
    raise AssertionError("unreachable")


def _memory(
    systems: dict[str, System], model_paths: list[Path], target_mb: float = 150.0
) -> dict[str, Any]:
    base = footprint(model_paths)
    out: dict[str, Any] = {
        "models": [p.stem for p in model_paths],
        "ort_session_rss_mb": round(base["session_rss"] / 1e6, 1),
        "ort_interpreter_rss_mb": round(base["interpreter_rss"] / 1e6, 1),
        "target_over_session_mb": target_mb,
    }
    for name, system in systems.items():
        out[f"{name}_serving_rss_mb"] = round(rss_bytes(system.serving()) / 1e6, 1)
    if "modelplane" in systems:
        replicas = systems["modelplane"].serving()
        if replicas:
            out["modelplane_replica_rss_mb"] = round(rss_bytes(replicas[:1]) / 1e6, 1)
            out["replica_over_session_mb"] = round(
                out["modelplane_replica_rss_mb"] - out["ort_session_rss_mb"], 1
            )
    return out


def run(opts: Options, say: Say = print) -> dict[str, Any]:
    report: dict[str, Any] = {
        "benchmark": "bench",
        "model": "tiny",
        "machine": machine(),
        "environment": _environment(),
        "options": vars(opts),
    }
    x = MODELS["tiny"].sample_input()
    request = predict_request({"x": x}, endpoint=ENDPOINT)
    payload = request.SerializeToString()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mp-bench-")))
        model_path = write_model("tiny", workdir / "models")
        systems, startup = _start_systems(stack, opts, model_path, workdir, say)
        report["startup"] = {k: v for k, v in startup.items() if not k.startswith("_")}
        for system in systems.values():
            _wait_answer(system.address, request, 120.0)
        names = list(systems)

        # 1. Closed loop, N in flight, rotating rounds: the saturation ratios + CPU.
        closed: dict[str, list[dict[str, Any]]] = {n: [] for n in [FLOOR, *names]}
        spec = LoadSpec(
            mode="closed", concurrency=opts.concurrency, duration_s=opts.closed_s,
            warmup_s=opts.warmup_s, processes=opts.processes,
        )
        for r in range(opts.rounds):
            for name in _order([FLOOR, *names], r):
                if name == FLOOR:
                    result = run_floor(model_path, x, opts.closed_s)
                else:
                    target = Target(systems[name].address, payload)
                    result = _cpu_run(systems[name], partial(run_load, target, spec))
                closed[name].append(result)
                say(
                    f"closed r{r + 1} {name:<12} {result['throughput_rps']:8.0f}/s  "
                    f"p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                    f"cpu/1k {result.get('cpu_s_per_1k')} s"
                )
        report["closed_loop"] = {
            "concurrency": opts.concurrency,
            "summary": {
                name: {
                    key: _median([r[key] for r in rs if r.get(key) is not None])
                    for key in ("throughput_rps", "p50_ms", "p99_ms", "cpu_s_per_1k",
                                "serving_cpu_s_per_1k")
                }
                | {"errors": sum(r["errors"] for r in rs)}
                for name, rs in closed.items()
            },
            "runs": {n: [_strip(r) for r in rs] for n, rs in closed.items()},
        }
        ceilings = {
            n: report["closed_loop"]["summary"][n]["throughput_rps"] or 1.0 for n in names
        }

        # 2. Highest open-loop rate with p99 <= 10 ms, the searches interleaved.
        say("rate search (p99 <= 10 ms), one probe per system per step")
        search = max_rates(
            {name: Target(systems[name].address, payload) for name in names}, ceilings,
            probe_s=opts.probe_s, warmup_s=min(opts.warmup_s, 1.0), steps=opts.probe_steps,
            processes=opts.processes, say=say,
        )
        report["max_rate"] = {
            FLOOR: {"max_rps": report["closed_loop"]["summary"][FLOOR]["throughput_rps"],
                    "note": "back-to-back calls on one thread; no queueing, so no search"},
            **{n: {k: v for k, v in s.items() if k != "probes"} for n, s in search.items()},
        }

        # 3. Latency and CPU at 25/50/75 % of each system's own maximum (its closed-loop
        # saturation throughput: always measurable, unlike the p99-bounded rate, which a
        # loaded machine can push to zero), rotating.
        levels: dict[str, dict[str, Any]] = {n: {} for n in names}
        for i, fraction in enumerate(opts.level_fractions):
            for name in _order(names, i):
                rate = ceilings[name] * fraction
                result = _cpu_run(
                    systems[name],
                    partial(
                        open_loop, Target(systems[name].address, payload), rate, opts.level_s,
                        min(opts.warmup_s, 1.0), opts.processes,
                    ),
                )
                result["offered_rps"] = round(rate, 1)
                levels[name][f"{int(fraction * 100)}%"] = result
                say(
                    f"level {int(fraction * 100)}% {name:<12} {rate:7.0f}/s  "
                    f"p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                    f"cpu/1k {result['cpu_s_per_1k']} s"
                )
        report["levels"] = {
            n: {lvl: _strip(r, keep_timeline=True) for lvl, r in ls.items()}
            for n, ls in levels.items()
        }
        report["probes"] = {n: [_strip(p) for p in s["probes"]] for n, s in search.items()}

        # 4. Memory: replicas against the onnxruntime session's own footprint.
        report["memory"] = {"tiny": _memory(systems, [model_path])}
        if opts.large and "modelplane" in systems:
            say("memory: adding the ~54 MB model to modelplane")
            large_path = write_model("large", workdir / "models")
            large_x = MODELS["large"].sample_input()
            startup["_up"].serve("bench-large", "large", large_path, large_x)
            report["memory"]["tiny+large"] = _memory(
                {"modelplane": systems["modelplane"]}, [model_path, large_path]
            )
    # Ray-free control-plane figures, after every Ray is gone.
    if opts.plane:
        with tempfile.TemporaryDirectory(prefix="mp-plane-") as tmp:
            report["plane"] = run_plane(
                Path(tmp),
                changes=opts.route_changes,
                register_rounds=opts.register_rounds,
                batch_seconds=opts.batch_s,
                batch_rounds=opts.batch_rounds,
                say=say,
            )
    report["ratios"] = ratios(report)
    report["environment"]["loadavg_after"] = os.getloadavg()
    return report


def _strip(result: dict[str, Any], keep_timeline: bool = False) -> dict[str, Any]:
    drop = {"histogram"} if keep_timeline else {"histogram", "timeline"}
    return {k: v for k, v in result.items() if k not in drop}


def ratios(report: dict[str, Any]) -> dict[str, Any]:
    """The targets' ratios, all from this one run."""
    out: dict[str, Any] = {}
    closed = report["closed_loop"]["summary"]
    top = report["max_rate"]

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    if "modelplane" in closed:
        levels = report["levels"]
        # Against the bare server on asyncio's loop (what grpc.aio gives by default),
        # and against the same server on uvloop (the loop modelplane's replica gets).
        for reference, suffix in (("bare", "bare"), (UVLOOP_REFERENCE, "bare_uvloop")):
            if reference not in closed:
                continue
            out[f"closed_throughput_modelplane_over_{suffix}"] = div(
                closed["modelplane"]["throughput_rps"], closed[reference]["throughput_rps"]
            )
            out[f"closed_p50_modelplane_over_{suffix}"] = div(
                closed["modelplane"]["p50_ms"], closed[reference]["p50_ms"]
            )
            out[f"max_rate_modelplane_over_{suffix}"] = div(
                top["modelplane"]["max_rps"], top[reference]["max_rps"]
            )
            if "50%" in levels.get("modelplane", {}) and "50%" in levels.get(reference, {}):
                out[f"p50_at_50pct_modelplane_over_{suffix}"] = div(
                    levels["modelplane"]["50%"]["p50_ms"], levels[reference]["50%"]["p50_ms"]
                )
        if "serve-proxy" in closed:
            out["closed_throughput_modelplane_over_serve_proxy"] = div(
                closed["modelplane"]["throughput_rps"], closed["serve-proxy"]["throughput_rps"]
            )
            out["max_rate_modelplane_over_serve_proxy"] = div(
                top["modelplane"]["max_rps"], top["serve-proxy"]["max_rps"]
            )
    out["closed_throughput_bare_over_floor"] = div(
        closed["bare"]["throughput_rps"], closed[FLOOR]["throughput_rps"]
    )
    return out


def parse_args(argv: list[str] | None = None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="seconds: floor, bare and the plane")
    parser.add_argument("--closed-seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probe-seconds", type=float, default=4.0)
    parser.add_argument("--probe-steps", type=int, default=6)
    parser.add_argument("--level-seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--no-serve-proxy", action="store_true")
    parser.add_argument("--no-modelplane", action="store_true")
    parser.add_argument("--no-plane", action="store_true")
    parser.add_argument("--no-large", action="store_true")
    parser.add_argument(
        "--no-uvloop-reference", action="store_true",
        help="leave out the bare server on uvloop",
    )
    parser.add_argument("--batch-rounds", type=int, default=3)
    parser.add_argument("--batch-seconds", type=float, default=8.0)
    parser.add_argument("--route-changes", type=int, default=50)
    parser.add_argument("--register-rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="JSON file (default: results/bench-<stamp>.json)")
    parser.add_argument(
        "--plots", type=Path, default=None,
        help="PNG directory (default: beside the JSON, in results/; the versioned "
        f"{PLOTS_DIR.name}/ holds the quoted run's, see BENCHMARKS.md)",
    )
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    opts = Options(
        closed_s=args.closed_seconds, rounds=args.rounds, probe_s=args.probe_seconds,
        probe_steps=args.probe_steps, level_s=args.level_seconds, warmup_s=args.warmup,
        concurrency=args.concurrency, processes=args.processes,
        serve_proxy=not args.no_serve_proxy, modelplane=not args.no_modelplane,
        plane=not args.no_plane, batch_rounds=args.batch_rounds, batch_s=args.batch_seconds,
        route_changes=args.route_changes, register_rounds=args.register_rounds,
        large=not args.no_large, uvloop_reference=not args.no_uvloop_reference,
    )
    if args.smoke:
        opts = Options(
            closed_s=1.0, rounds=1, probe_s=1.0, probe_steps=1, level_s=1.0, warmup_s=0.3,
            concurrency=8, processes=1, serve_proxy=False, modelplane=False,
            plane=not args.no_plane, batch_rounds=0, batch_s=1.0, route_changes=5,
            register_rounds=1, large=False, level_fractions=(0.5,), uvloop_reference=False,
        )
    return opts, args


def main(argv: list[str] | None = None) -> int:
    opts, args = parse_args(argv)
    began = time.monotonic()
    report = run(opts)
    report["elapsed_s"] = round(time.monotonic() - began, 1)
    out = write_report(report, "bench-smoke" if args.smoke else "bench", args.out)
    print(f"\nwrote {out}")
    if not args.no_plots:
        from loadtests.plots import write_plots

        # Beside the JSON by default: a run rewriting the versioned PNGs would leave
        # them out of step with the run BENCHMARKS.md quotes.
        for path in write_plots(report, args.plots or out.parent / out.stem):
            print(f"plot  {path}")
    print(json.dumps(report["ratios"], indent=2))
    print(f"elapsed {report['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
