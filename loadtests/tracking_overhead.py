"""What experiment tracking adds to a training loop's wall time.

Starts a real Redis and a real control plane (``modelplane control-plane``) in
other processes, then times the same loop with and without
``run.log_metric`` on every step, alternating so both see the same machine
load. The loop body is a small numpy step (``--work`` matrix size) standing in
for a training step; the smaller it is, the larger the relative cost.

Besides the wall time it reports the CPU each side spends per point: the
training process (``log_metric`` plus the sender thread), and the control plane
and Redis, which in production run elsewhere but here share the machine's cores
with the loop.

    python -m loadtests.tracking_overhead --points 100000 --work 96 --repeats 5
"""

from __future__ import annotations

import argparse
import os

# One BLAS thread: on a shared machine, spinning BLAS threads make both loops
# noise. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

import modelplane
from modelplane.registry.embedded_redis import EmbeddedRedis


def _step(a: np.ndarray, b: np.ndarray) -> float:
    return float((a @ b)[0, 0])


def _loop(points: int, a: np.ndarray, b: np.ndarray, run: object | None) -> float:
    log = getattr(run, "log_metric", None)
    started = time.perf_counter()
    for step in range(points):
        loss = _step(a, b)
        if log is not None:
            log("loss", loss, step)
    return time.perf_counter() - started


def _interleaved(
    points: int, chunk: int, a: np.ndarray, b: np.ndarray, run: modelplane.ActiveRun
) -> tuple[float, float]:
    """(bare, tracked) seconds: chunks of ``chunk`` steps, alternately without and with logging.

    Host noise on a shared machine drifts over seconds (a bare loop alone varies
    by several % from one 6 s run to the next), so whole-loop comparisons cannot
    resolve a 2 % cost in a few rounds; sub-second alternation can. Both kinds of
    chunk run while the run is open, so this isolates what ``log_metric`` costs in
    the loop: the sender thread and the servers load both kinds alike, and they
    are reported as CPU per point instead.
    """
    bare = tracked = 0.0
    log = run.log_metric
    for first in range(0, points, chunk):
        started = time.perf_counter()
        for _ in range(first, min(first + chunk, points)):
            _step(a, b)
        middle = time.perf_counter()
        for step in range(first, min(first + chunk, points)):
            log("loss", _step(a, b), step)
        ended = time.perf_counter()
        bare += middle - started
        tracked += ended - middle
    return bare, tracked


def _thread_cpu(native_id: int | None) -> float:
    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return float(thread.user_time + thread.system_time)
    return 0.0


def _cpu() -> float:
    # This process only (the loop and the sender thread), not the control plane
    # or Redis, which in production run elsewhere but here share the cores.
    return time.process_time()


def _cpu_of(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _start_control_plane(redis_url: str, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelplane.cli",
            "control-plane",
            "--redis-url",
            redis_url,
            "--control-port",
            "0",
            "--host",
            "127.0.0.1",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("control plane"):
            return proc, line.split()[-1]
    proc.kill()
    raise RuntimeError("the control plane did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--work", type=int, default=96, help="matrix size of the fake step")
    # Rounds of (bare, tracked); medians of several rounds ride out a noisy machine.
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--chunk", type=int, default=500, help="steps per chunk of the interleaved measurement"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a = rng.random((args.work, args.work))
    b = rng.random((args.work, args.work))
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis_db:
        proc, address = _start_control_plane(redis_db.url, Path(tmp) / "data")
        assert redis_db.pid is not None
        servers = {"control plane": psutil.Process(proc.pid), "redis": psutil.Process(redis_db.pid)}
        server_cpu: dict[str, list[float]] = {name: [] for name in servers}
        server_idle: dict[str, list[float]] = {name: [] for name in servers}
        try:
            bare: list[float] = []
            tracked: list[float] = []
            with_flush: list[float] = []
            bare_cpu: list[float] = []
            tracked_cpu: list[float] = []
            in_loop: list[float] = []
            sender_cpu: list[float] = []
            _loop(min(args.points, 5_000), a, b, None)  # warm caches and BLAS threads
            for _ in range(args.repeats):
                cpu = _cpu()
                idle_before = {name: _cpu_of(p) for name, p in servers.items()}
                bare.append(_loop(args.points, a, b, None))
                bare_cpu.append(_cpu() - cpu)
                for name, process in servers.items():
                    # What the servers spend anyway (timers, polling) over a loop's time.
                    server_idle[name].append(_cpu_of(process) - idle_before[name])
                started, cpu = time.perf_counter(), _cpu()
                before = {name: _cpu_of(p) for name, p in servers.items()}
                with modelplane.start_run(experiment="bench", address=address) as run:
                    tracked.append(_loop(args.points, a, b, run))
                with_flush.append(time.perf_counter() - started)
                tracked_cpu.append(_cpu() - cpu)
                for name, process in servers.items():
                    server_cpu[name].append(_cpu_of(process) - before[name])
                assert run.points_sent == args.points, run.points_sent
                with modelplane.start_run(experiment="bench", address=address) as run:
                    bare_s, tracked_s = _interleaved(args.points, args.chunk, a, b, run)
                    run.flush()
                    sender_cpu.append(_thread_cpu(run._sender.native_id))
                in_loop.append((tracked_s - bare_s) / args.points)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    base = statistics.median(bare)
    loop = statistics.median(tracked)
    total = statistics.median(with_flush)
    print(f"points per run        {args.points}")
    print(f"bare loop             {base:.3f} s  ({base / args.points * 1e6:.1f} us/step)")
    print(f"loop with logging     {loop:.3f} s  (+{(loop / base - 1) * 100:.2f} %)")
    print(f"  incl. start+flush   {total:.3f} s  (+{(total / base - 1) * 100:.2f} %)")
    print(f"added per point       {(loop - base) / args.points * 1e6:.2f} us (wall)")
    cpu_base, cpu_tracked = statistics.median(bare_cpu), statistics.median(tracked_cpu)
    print(
        f"training process CPU  {cpu_base:.3f} s -> {cpu_tracked:.3f} s "
        f"(+{(cpu_tracked / cpu_base - 1) * 100:.2f} %, "
        f"{(cpu_tracked - cpu_base) / args.points * 1e6:.2f} us per point)"
    )
    for name, spent in server_cpu.items():
        # The whole run (start, points, flush, end) less what the server spent
        # during an untracked loop of the same length.
        spent_s = statistics.median(spent) - statistics.median(server_idle[name])
        print(
            f"{name + ' CPU':<21} {spent_s:.3f} s ({spent_s / args.points * 1e6:.2f} us per "
            f"point; {statistics.median(server_idle[name]):.3f} s when idle)"
        )
    step_s = statistics.median(bare) / args.points
    loop_cost, sender_cost = statistics.median(in_loop), statistics.median(sender_cpu) / args.points
    servers_cost = (
        sum(
            statistics.median(spent) - statistics.median(server_idle[name])
            for name, spent in server_cpu.items()
        )
        / args.points
    )
    print(
        f"log_metric in the loop {loop_cost * 1e6:.2f} us per point "
        f"(interleaved chunks of {args.chunk} steps; rounds: "
        + " ".join(f"{cost * 1e6:.2f}" for cost in in_loop)
        + ")"
    )
    print(f"sender thread CPU     {sender_cost * 1e6:.2f} us per point")
    print(
        f"expected overhead     {(loop_cost + sender_cost) / step_s * 100:.2f} % with the servers "
        f"on other cores, {(loop_cost + sender_cost + servers_cost) / step_s * 100:.2f} % if "
        f"all their CPU came out of the loop's"
    )
    print(
        "overhead per round    "
        + " ".join(f"{(t / b - 1) * 100:+.2f}%" for t, b in zip(tracked, bare, strict=True))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
