"""Where a serving process's latency tail comes from, at one fixed arrival rate.

The same open-loop (Poisson) load, in alternating windows, on:

- ``bare``: the bare grpc.aio + onnxruntime Predict server;
- ``replica-process``: modelplane's ``ReplicaRuntime`` in a plain process of its own
  (embedded Redis, routed endpoint, no Ray, no telemetry);
- ``modelplane``: the whole stack under Ray Serve (``LocalStack``, default settings).

For each window it reports the latency percentiles and, from the serving process's
own threads (``/proc/PID/task/*/schedstat``), the CPU and the run-queue wait per
request: the time its threads were runnable but not running. Equal CPU with more
waiting says the process is losing the cores to others, not doing more work; the
replica with and without Ray says how much of the tail is the hosting.

    python -m loadtests.tail_anatomy --rate 600 --seconds 20 --rounds 2
    python -m loadtests.tail_anatomy --no-ray --seconds 3 --rounds 1   # seconds, no Ray
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.models import MODELS, write_model
from loadtests.oip_vs_bare import _start_replica_process
from loadtests.predict_vs_bare import ENDPOINT, _environment, _start_modelplane
from loadtests.procs import ServerProcess
from loadtests.ratesearch import open_loop
from loadtests.report_file import write_report
from loadtests.sysproc import matching

Say = Callable[[str], None]


@dataclass(frozen=True)
class ThreadTimes:
    """One thread's cumulative CPU and run-queue wait, in ns (from its schedstat)."""

    name: str
    cpu_ns: int
    wait_ns: int


def thread_times(pid: int) -> dict[int, ThreadTimes]:
    """Every thread of ``pid`` that could be read (threads come and go while reading)."""
    found: dict[int, ThreadTimes] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            cpu_ns, wait_ns, _ = (int(part) for part in (task / "schedstat").read_text().split())
        except (OSError, ValueError):
            continue
        found[int(task.name)] = ThreadTimes(name, cpu_ns, wait_ns)
    return found


def per_request(
    before: dict[int, ThreadTimes], after: dict[int, ThreadTimes], requests: float
) -> dict[str, Any]:
    """CPU and wait per request over the threads alive throughout, busiest first."""
    shares: list[tuple[str, float, float]] = []  # thread name, CPU us, wait us
    for tid, end in after.items():
        start = before.get(tid)
        if start is not None:
            shares.append(
                (
                    end.name,
                    (end.cpu_ns - start.cpu_ns) / requests / 1e3,
                    (end.wait_ns - start.wait_ns) / requests / 1e3,
                )
            )
    shares.sort(key=lambda share: -share[1])
    return {
        "cpu_us": round(sum(cpu for _, cpu, _ in shares), 1),
        "wait_us": round(sum(wait for _, _, wait in shares), 1),
        # The event loop's thread is the busiest; the next is grpc's poller.
        "busiest": [
            {"thread": name, "cpu_us": round(cpu, 1), "wait_us": round(wait, 1)}
            for name, cpu, wait in shares[:3]
        ],
    }


def _serving_pid(root_pid: int, needle: str) -> int:
    found = matching(root_pid, needle)
    if not found:
        raise RuntimeError(f"no process of {root_pid}'s tree runs {needle!r}")
    pid: int = found[0].pid
    return pid


def window(
    target: Target, pid: int, rate: float, seconds: float, warmup_s: float
) -> dict[str, Any]:
    """One open-loop window; the serving process's threads measured around it."""
    before = thread_times(pid)
    result = open_loop(target, rate, seconds, warmup_s, processes=LoadSpec.processes)
    after = thread_times(pid)
    # The threads run through the warm-up too; the generator sends at the same rate then.
    sent = max(1.0, result["throughput_rps"] * (seconds + warmup_s))
    worst_second = max((row["p99_ms"] for row in result["timeline"]), default=None)
    return {
        "p50_ms": result["p50_ms"],
        "p90_ms": result["p90_ms"],
        "p99_ms": result["p99_ms"],
        "p999_ms": result["p999_ms"],
        "worst_second_p99_ms": worst_second,
        "throughput_rps": result["throughput_rps"],
        "errors": result["errors"],
        "threads": per_request(before, after, sent),
    }


def run(args: argparse.Namespace, say: Say = print) -> dict[str, Any]:
    bench_model = MODELS[args.model]
    inputs = {bench_model.input_name: bench_model.sample_input()}
    environment = _environment()
    targets: dict[str, tuple[Target, int]] = {}
    windows: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mp-tail-")))
        model_path = write_model(args.model, workdir / "models")
        me = os.getpid()
        say("starting bare (grpc.aio + onnxruntime)")
        bare = stack.enter_context(
            ServerProcess("loadtests.bare_server", ["--model", str(model_path)])
        )
        targets["bare"] = (Target.predict(bare.address, inputs, endpoint=ENDPOINT), bare.pid)
        say("starting replica-process (modelplane's replica, no Ray)")
        address = _start_replica_process(stack, workdir / "plain", model_path, args.model)
        targets["replica-process"] = (
            Target.predict(address, inputs, endpoint=ENDPOINT),
            _serving_pid(me, "loadtests.replica_server"),
        )
        if not args.no_ray:
            say("starting modelplane (LocalStack: Redis, control plane, Ray, data plane)")
            address = _start_modelplane(stack, workdir / "ray", model_path, args.model)
            targets["modelplane"] = (
                Target.predict(address, inputs, endpoint=ENDPOINT),
                _serving_pid(me, "ServeReplica"),
            )
        for target, _ in targets.values():  # connections and sessions warm
            run_load(target, LoadSpec(mode="closed", concurrency=4, duration_s=1, warmup_s=1))
        names = list(targets)
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                target, pid = targets[name]
                measured = window(target, pid, args.rate, args.seconds, args.warmup)
                windows.setdefault(name, []).append(measured)
                threads = measured["threads"]
                say(
                    f"round {round_index + 1}/{args.rounds} {name:16s} p50 {measured['p50_ms']:.2f}"
                    f"  p90 {measured['p90_ms']:.2f}  p99 {measured['p99_ms']:.2f}"
                    f"  p99.9 {measured['p999_ms']:.2f} ms; per request: CPU "
                    f"{threads['cpu_us']:.0f} us, run-queue wait {threads['wait_us']:.0f} us"
                )
    return {
        "benchmark": "tail_anatomy",
        "model": args.model,
        "rate_rps": args.rate,
        "window_s": args.seconds,
        "environment": environment,
        "windows": windows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=600.0, help="arrivals per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="tiny", choices=sorted(MODELS))
    parser.add_argument("--no-ray", action="store_true", help="leave the Ray Serve stack out")
    parser.add_argument(
        "--out", type=Path, help="JSON file (default: results/tail_anatomy-<stamp>.json)"
    )
    args = parser.parse_args(argv)
    report = run(args)
    print(f"wrote {write_report(report, 'tail_anatomy', args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
