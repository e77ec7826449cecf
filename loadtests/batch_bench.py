"""Dynamic batching: the heavy MLP (4 x 1024) batched against unbatched, over gRPC.

Two replica processes that differ only in ``MODELPLANE_BATCH_MAX_SIZE`` (default
vs 1), loaded in alternating order with the closed-loop load generator: at 64
requests in flight (throughput) and at 1 in flight (latency of a lone request).

Then the lone-request comparison again, paired inside one replica
(``loadtests.paired_lone``): the two replica processes above differ in more than
batching, and on a shared machine that moves a lone request's p50 by more than
the question asks about.

``--runner-only`` measures the batcher itself instead, in this process without
gRPC (coroutines calling ``VersionRunner.run``): what batching gains on the
model, apart from what the transport costs per request.

    python -m loadtests.batch_bench --seconds 5 --rounds 2 --pairs 3000
    python -m loadtests.batch_bench --runner-only --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.paired_lone import paired_lone_latency
from loadtests.plane import batching, plane


def runner_only(seconds: float) -> dict[str, Any]:
    import onnxruntime as ort

    from modelplane.domain.models import (
        DataType,
        ModelVersion,
        Signature,
        TensorSpec,
        VersionStatus,
    )
    from modelplane.sample_models import mlp_model
    from modelplane.serving.batcher import VersionRunner
    from modelplane.serving.sessions import LoadedModel

    data = mlp_model()
    signature = Signature(
        (TensorSpec("x", DataType.FLOAT32, (-1, 1024)),),
        (TensorSpec("y", DataType.FLOAT32, (-1, 1024)),),
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = LoadedModel(
        ModelVersion("mlp", 1, "0" * 64, len(data), signature, VersionStatus.READY, "", 0),
        ort.InferenceSession(data, options),
    )
    x = np.random.default_rng(0).standard_normal((1, 1024)).astype(np.float32)

    async def load(runner: VersionRunner, in_flight: int) -> dict[str, float]:
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < end:
                started = time.perf_counter()
                await runner.run({"x": x})
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        latencies.sort()
        return {
            "throughput_rps": round(len(latencies) / seconds, 1),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 3),
        }

    results: dict[str, Any] = {}
    for name, max_batch in (("batched", 32), ("unbatched", 1)):
        runner = VersionRunner(model, max_batch_size=max_batch)
        results[name] = {
            "mode": runner.mode,
            "in_flight_64": asyncio.run(load(runner, 64)),
            "in_flight_1": asyncio.run(load(runner, 1)),
        }
        print(f"  {name}: {results[name]}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--runner-only", action="store_true")
    parser.add_argument(
        "--pairs", type=int, default=3000,
        help="lone requests per endpoint in the paired comparison (0: skip it)",
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    if args.runner_only:
        results["runner_only"] = runner_only(args.seconds)
        print(json.dumps(results, indent=2))
        return
    with tempfile.TemporaryDirectory(prefix="batch-") as tmp, plane(Path(tmp)) as p:
        for in_flight in (64, 1):
            print(f"heavy MLP at {in_flight} in flight: batched vs unbatched")
            results[f"in_flight_{in_flight}"] = batching(
                p, Path(tmp) / f"w{in_flight}", args.seconds, args.rounds, in_flight, print
            )
        if args.pairs > 0:
            print(f"one request in flight, paired in one replica ({args.pairs} pairs)")
            results["lone_paired"] = paired_lone_latency(
                p, Path(tmp) / "paired", args.pairs, args.seconds, print
            )
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
