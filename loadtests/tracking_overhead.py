"""What experiment tracking adds to a training loop's wall time.

Starts a real Redis and a real control plane (``modelplane control-plane``) in
other processes, then times the same loop with and without
``run.log_metric`` on every step, alternating so both see the same machine
load. The loop body is a training step: by default one step of minibatch SGD on
a small two-layer network in numpy (``--step mlp``: forward, backward, update;
the loss is what is logged); ``--step matmul`` is a single matrix product of
``--work`` rows instead, a step far cheaper than any real training step, to show
the worst case: the cheaper the step, the larger the relative cost.

Whole loops with and without logging, run one after the other, differ by less
than the host's noise (rounds move by 10-20 %). Two figures get below it:

- parts measured precisely: the time inside ``log_metric`` timed around each
  call in the loop, plus the sender thread's CPU from its own clock (it takes
  the GIL from the loop while it encodes), over the bare step's time;
- the loop's wall time in adjacent segments of ``--segment`` steps with and
  without logging (``_paired_wall``), which also catches what the parts miss:
  a step slowed because logging disturbed its caches. This is the figure that
  decides; it comes with a bootstrap interval over the pairs.

It also reports the CPU the control plane and Redis spend per point: in
production they run elsewhere, here they share the machine's cores with the loop.

    python -m loadtests.tracking_overhead --points 100000 --repeats 5
    python -m loadtests.tracking_overhead --points 100000 --step matmul --work 96 --repeats 5
"""

from __future__ import annotations

import argparse
import inspect
import os

# One BLAS thread: on a shared machine, spinning BLAS threads make both loops
# noise. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

import modelplane
from loadtests.bootstrap import interval95
from modelplane.registry.embedded_redis import EmbeddedRedis


class MatmulStep:
    """One matrix product: a stand-in far cheaper than a training step (the worst case)."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self._a = rng.random((size, size))
        self._b = rng.random((size, size))

    def __call__(self) -> float:
        return float((self._a @ self._b)[0, 0])


class SgdStep:
    """One minibatch SGD step of a 2-layer classifier (ReLU, softmax cross-entropy).

    64 features, 10 classes; by default batch 32 and 128 hidden units, small on
    purpose: the fastest kind of loop that still trains something, so the
    relative cost of logging a point on every step is near its largest for
    real training. ``--batch`` and ``--hidden`` make it a heavier step.
    """

    FEATURES, CLASSES, RATE = 64, 10, 0.05

    def __init__(self, rng: np.random.Generator, batch: int = 32, hidden: int = 128) -> None:
        self.BATCH, self.HIDDEN = batch, hidden
        self._x = rng.standard_normal((max(1024, 4 * batch), self.FEATURES))
        true_weights = rng.standard_normal((self.FEATURES, self.CLASSES))
        self._labels = np.argmax(self._x @ true_weights, axis=1)
        self._w1 = rng.standard_normal((self.FEATURES, self.HIDDEN)) * 0.1
        self._w2 = rng.standard_normal((self.HIDDEN, self.CLASSES)) * 0.1
        self._at = 0

    def __call__(self) -> float:
        rows = slice(self._at, self._at + self.BATCH)
        self._at = (self._at + self.BATCH) % len(self._x)
        x, labels = self._x[rows], self._labels[rows]
        hidden = np.maximum(x @ self._w1, 0.0)
        logits = hidden @ self._w2
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        picked = np.arange(len(labels))
        loss = -float(np.mean(np.log(probs[picked, labels] + 1e-12)))
        probs[picked, labels] -= 1.0
        probs /= len(labels)
        grad_w2 = hidden.T @ probs
        grad_hidden = (probs @ self._w2.T) * (hidden > 0)
        self._w2 -= self.RATE * grad_w2
        self._w1 -= self.RATE * (x.T @ grad_hidden)
        return loss


Step = Callable[[], float]


def _loop(points: int, step_fn: Step, run: object | None) -> float:
    log = getattr(run, "log_metric", None)
    started = time.perf_counter()
    for step in range(points):
        loss = step_fn()
        if log is not None:
            log("loss", loss, step)
    return time.perf_counter() - started


def _in_situ(points: int, step_fn: Step, run: modelplane.ActiveRun) -> float:
    """Seconds per point spent inside ``log_metric``, timed around each call in the loop.

    Whole-loop comparisons cannot resolve a cost of a few microseconds a step:
    host noise on a shared machine moves a loop's wall time by several % from
    one run to the next, and sub-second alternation of loops with and without
    logging still carries noise in proportion to the step's duration. Timing
    the call itself, right after a real step (so with the caches as the step
    left them), does not; an empty pair of clock reads on every step is taken
    away as the timer's own cost.
    """
    log = run.log_metric
    clock = time.perf_counter_ns
    logging_ns = timer_ns = 0
    for step in range(points):
        loss = step_fn()
        before = clock()
        started = clock()
        log("loss", loss, step)
        ended = clock()
        timer_ns += started - before
        logging_ns += ended - started
    return (logging_ns - timer_ns) / points / 1e9


@dataclass(frozen=True)
class PairedWall:
    pairs: int
    ratio: float  # total time of the segments with logging / of those without
    ci95: tuple[float, float]
    sender_batches: int


def _paired_wall(
    points: int, segment: int, step_fn: Step, address: str, step_s: float
) -> PairedWall:
    """The loop's own wall time with and without logging, in adjacent segments.

    ``points`` steps with ``log_metric`` in segments of ``segment`` steps, each
    beside a segment of as many steps without it (order swapped every pair), so
    both halves of a pair share the machine's moment. This catches what timing
    the call alone cannot: a step that runs slower because logging disturbed
    its caches, and the GIL the sender takes from the loop.

    The sender sends what a run's default flush interval gathers, but woken at
    the start of a logging segment instead of on its timer, so its work lands
    in a segment with logging, as it would in a loop that logs on every step.
    The figure is the total time of the segments with logging over the total
    of those without; the interval resamples whole pairs.
    """
    wake_every = max(1, round(_default_flush_interval_s() / (segment * step_s)))
    with_logging: list[float] = []
    without: list[float] = []
    with modelplane.start_run(
        experiment="bench", address=address, flush_interval_s=3600.0
    ) as run:
        log, wake = run.log_metric, run._wake.set
        first = 0  # step number of the next logged point
        for pair in range(points // segment):
            for logging in (False, True) if pair % 2 == 0 else (True, False):
                started = time.perf_counter()
                if logging:
                    if pair % wake_every == 0:
                        wake()
                    for step in range(first, first + segment):
                        log("loss", step_fn(), step)
                    first += segment
                    with_logging.append(time.perf_counter() - started)
                else:
                    for _ in range(segment):
                        step_fn()
                    without.append(time.perf_counter() - started)
    batches = run.batches_sent  # the last ones went out as the run ended
    logged, bare = np.array(with_logging), np.array(without)
    low, high = interval95(
        len(logged), lambda picks: logged[picks].sum(axis=1) / bare[picks].sum(axis=1)
    )
    return PairedWall(len(logged), float(logged.sum() / bare.sum()), (low, high), batches)


def _default_flush_interval_s() -> float:
    """The flush interval a run gets by default."""
    default = inspect.signature(modelplane.start_run).parameters["flush_interval_s"].default
    return float(default)


def _thread_cpu(thread: threading.Thread) -> float:
    """A live thread's CPU seconds, from its own clock (ns, not scheduler ticks)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


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
    parser.add_argument(
        "--step",
        choices=("mlp", "matmul"),
        default="mlp",
        help="mlp: a real SGD step of a small network; matmul: one product of --work rows",
    )
    parser.add_argument("--batch", type=int, default=32, help="minibatch rows of --step mlp")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units of --step mlp")
    parser.add_argument("--work", type=int, default=96, help="matrix size of --step matmul")
    # Rounds of (bare, tracked); medians of several rounds ride out a noisy machine.
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--segment", type=int, default=500,
        help="steps per segment of the paired wall-time measurement (0: skip it)",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    step_fn: Step = (
        SgdStep(rng, args.batch, args.hidden) if args.step == "mlp" else MatmulStep(args.work, rng)
    )
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
            _loop(min(args.points, 5_000), step_fn, None)  # warm caches and BLAS threads
            for _ in range(args.repeats):
                cpu = _cpu()
                idle_before = {name: _cpu_of(p) for name, p in servers.items()}
                bare.append(_loop(args.points, step_fn, None))
                bare_cpu.append(_cpu() - cpu)
                for name, process in servers.items():
                    # What the servers spend anyway (timers, polling) over a loop's time.
                    server_idle[name].append(_cpu_of(process) - idle_before[name])
                started, cpu = time.perf_counter(), _cpu()
                before = {name: _cpu_of(p) for name, p in servers.items()}
                with modelplane.start_run(experiment="bench", address=address) as run:
                    tracked.append(_loop(args.points, step_fn, run))
                with_flush.append(time.perf_counter() - started)
                tracked_cpu.append(_cpu() - cpu)
                for name, process in servers.items():
                    server_cpu[name].append(_cpu_of(process) - before[name])
                assert run.points_sent == args.points, run.points_sent
                with modelplane.start_run(experiment="bench", address=address) as run:
                    in_loop.append(_in_situ(args.points, step_fn, run))
                    run.flush()
                    sender_cpu.append(_thread_cpu(run._sender))
            paired = (
                _paired_wall(
                    args.points, args.segment, step_fn, address,
                    statistics.median(bare) / args.points,
                )
                if args.segment
                else None
            )
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
        f"(timed around each call; rounds: "
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
    if paired is not None:
        low, high = paired.ci95
        print(
            f"paired wall time      {(paired.ratio - 1) * 100:+.2f} % (95 % interval "
            f"{(low - 1) * 100:+.2f} to {(high - 1) * 100:+.2f} %) over {paired.pairs} pairs of "
            f"{args.segment} steps with and without logging; {paired.sender_batches} batches sent"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
