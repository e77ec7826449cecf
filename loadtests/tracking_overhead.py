"""What experiment tracking adds to a training loop's wall time.

Starts a real Redis and a real control plane (``modelplane control-plane``) in
other processes, then times the same loop with and without
``run.log_metric`` on every step, alternating so both see the same machine
load. The loop body is a small numpy step (``--work`` matrix size) standing in
for a training step; the smaller it is, the larger the relative cost.

    python -m loadtests.tracking_overhead --points 100000 --work 96 --repeats 3
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


def _cpu() -> float:
    # This process only (the loop and the sender thread), not the control plane
    # or Redis, which in production run elsewhere but here share the cores.
    return time.process_time()


def _start_control_plane(redis_url: str, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelplane.cli", "control-plane", "--redis-url", redis_url,
         "--control-port", "0", "--host", "127.0.0.1", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, text=True,
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
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a = rng.random((args.work, args.work))
    b = rng.random((args.work, args.work))
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis_db:
        proc, address = _start_control_plane(redis_db.url, Path(tmp) / "data")
        try:
            bare: list[float] = []
            tracked: list[float] = []
            with_flush: list[float] = []
            bare_cpu: list[float] = []
            tracked_cpu: list[float] = []
            _loop(min(args.points, 5_000), a, b, None)  # warm caches and BLAS threads
            for _ in range(args.repeats):
                cpu = _cpu()
                bare.append(_loop(args.points, a, b, None))
                bare_cpu.append(_cpu() - cpu)
                started, cpu = time.perf_counter(), _cpu()
                with modelplane.start_run(experiment="bench", address=address) as run:
                    tracked.append(_loop(args.points, a, b, run))
                with_flush.append(time.perf_counter() - started)
                tracked_cpu.append(_cpu() - cpu)
                assert run.points_sent == args.points, run.points_sent
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
    print(f"training process CPU  {cpu_base:.3f} s -> {cpu_tracked:.3f} s "
          f"(+{(cpu_tracked / cpu_base - 1) * 100:.2f} %, "
          f"{(cpu_tracked - cpu_base) / args.points * 1e6:.2f} us per point)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
