"""The floor: onnxruntime called in process, no network, no protobuf.

What no server can beat: the same session options as every other system, one row per
call, back to back on one thread. Also measures the footprint an onnxruntime session
costs on its own (a fresh interpreter that imports numpy + onnxruntime and loads the
models), the baseline the replica's RSS target is stated against.

    python -m loadtests.floor --model tiny.onnx --seconds 5
    python -m loadtests.floor --footprint tiny.onnx large.onnx
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.loadgen import new_histogram, record_seconds


def run_floor(
    model_path: Path, x: np.ndarray, seconds: float, warmup_s: float = 0.5
) -> dict[str, Any]:
    """Back-to-back ``session.run`` for ``seconds``: latency percentiles, calls per second
    and CPU-seconds per 1,000 calls (this thread's CPU time)."""
    from loadtests.ort import session

    sess = session(model_path)
    feeds = {sess.get_inputs()[0].name: x}
    outputs = [o.name for o in sess.get_outputs()]
    end_warmup = time.perf_counter() + warmup_s
    while time.perf_counter() < end_warmup:
        sess.run(outputs, feeds)
    histogram = new_histogram()
    calls = 0
    cpu_before = time.thread_time()
    began = time.perf_counter()
    end = began + seconds
    now = began
    while now < end:
        sess.run(outputs, feeds)
        after = time.perf_counter()
        record_seconds(histogram, after - now)
        now = after
        calls += 1
    elapsed = now - began
    cpu = time.thread_time() - cpu_before
    return {
        "requests": calls,
        "duration_s": round(elapsed, 3),
        "throughput_rps": round(calls / elapsed, 2),
        "p50_ms": round(histogram.get_value_at_percentile(50.0) / 1000.0, 4),
        "p99_ms": round(histogram.get_value_at_percentile(99.0) / 1000.0, 4),
        "cpu_s_per_1k": round(cpu / calls * 1000.0, 4),
        "errors": 0,
    }


def footprint(model_paths: list[Path]) -> dict[str, int]:
    """RSS of a fresh interpreter: bare, after importing numpy + onnxruntime, after
    loading the sessions. Run in a child so nothing else this process holds counts."""
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.floor", "--footprint", *map(str, model_paths)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _measure_footprint(paths: list[Path]) -> dict[str, int]:
    import psutil

    me = psutil.Process()
    bare = me.memory_info().rss
    import onnxruntime  # noqa: F401  (the import is what is measured)

    from loadtests.ort import session

    imported = me.memory_info().rss
    sessions = [session(p) for p in paths]
    for s in sessions:  # one run, so lazily allocated arenas count too
        first = s.get_inputs()[0]
        width = first.shape[-1] if isinstance(first.shape[-1], int) else 1
        s.run(None, {first.name: np.zeros((1, width), np.float32)})
    loaded = me.memory_info().rss
    return {"interpreter_rss": bare, "imported_rss": imported, "session_rss": loaded}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--footprint", type=Path, nargs="+")
    args = parser.parse_args(argv)
    if args.footprint:
        print(json.dumps(_measure_footprint(args.footprint)))
        return
    if args.model is None:
        parser.error("--model or --footprint is required")
    x = np.random.default_rng(0).standard_normal((1, args.width)).astype(np.float32)
    print(json.dumps(run_floor(args.model, x, args.seconds), indent=2))


if __name__ == "__main__":
    main()
