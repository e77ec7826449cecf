"""A lone request, batched against unbatched, paired inside one replica.

Two replica processes differ in more than their batching setting: where the
scheduler puts them, what else runs beside them, the state of their caches. On a
shared 2-vCPU machine those differences move a 3 ms p50 by several percent from
one run to the next, which is larger than what is being asked ("does batching cost
a lone request anything?"). So this measurement takes them out:

- one replica serves two endpoints, each routed to its own version of the same
  heavy MLP: ``mlp-batched`` with batching on (``max_batch_size`` 64) and
  ``mlp-unbatched`` with batching off (``max_batch_size`` 1);
- both versions first take a burst at 64 in flight, so the batched one has run
  real batches (the state a lone request meets in production) and the burst's
  throughput shows batching is in effect;
- then one client sends a request to each endpoint in turn, one at a time, the
  order swapped every pair, and times each call.

Each pair shares the moment it was sent in, so machine noise lands on both sides.
The figure is the ratio of the two medians, with a 95 % bootstrap interval drawn
by resampling whole pairs.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from loadtests.bootstrap import interval95
from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.models import MODELS, write_model
from loadtests.plane import Plane, Say, wait_served
from loadtests.tensors import predict_request
from modelplane.v1 import inference_pb2, inference_pb2_grpc

ENDPOINTS = {"mlp-batched": 64, "mlp-unbatched": 1}


def paired_lone_latency(
    p: Plane, workdir: Path, pairs: int, burst_s: float, say: Say
) -> dict[str, Any]:
    model_path = write_model("mlp", workdir / "models")
    x = MODELS["mlp"].sample_input()
    requests = {
        endpoint: predict_request({"x": x}, endpoint=endpoint) for endpoint in ENDPOINTS
    }
    with p.client() as client:
        versions = {}
        for endpoint, max_batch_size in ENDPOINTS.items():
            version = client.register("mlp-pair", model_path).version
            versions[endpoint] = version
            client.set_route(
                endpoint, [("mlp-pair", version, 100)], max_batch_size=max_batch_size
            )
    with p.replica("bench-paired") as server:
        for endpoint, request in requests.items():
            wait_served(server.address, request, partial(_answered_by, versions[endpoint]),
                        timeout_s=60)
        burst = {}
        spec = LoadSpec(
            mode="closed", concurrency=64, duration_s=burst_s, warmup_s=0.5, processes=2
        )
        for endpoint, request in requests.items():
            result = run_load(Target(server.address, request.SerializeToString()), spec)
            burst[endpoint] = {"throughput_rps": result["throughput_rps"],
                               "errors": result["errors"]}
            say(f"  burst at 64 in flight, {endpoint}: {result['throughput_rps']} req/s")
        latencies = _alternate(server.address, requests, versions, pairs)
    return {"pairs": pairs, "burst_64_in_flight": burst, **_compare(latencies)}


def _answered_by(version: int, response: inference_pb2.PredictResponse) -> bool:
    return response.version == version


def _alternate(
    address: str,
    requests: dict[str, inference_pb2.PredictRequest],
    versions: dict[str, int],
    pairs: int,
) -> dict[str, np.ndarray]:
    """Microseconds per call, ``pairs`` calls per endpoint, index i of each from pair i."""
    names = list(requests)
    latencies = {name: np.empty(pairs) for name in names}
    with grpc.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        for name in names * 20:  # warm both call paths before timing
            stub.Predict(requests[name], timeout=10)
        for i in range(pairs):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                started = time.perf_counter_ns()
                response = stub.Predict(requests[name], timeout=10)
                latencies[name][i] = (time.perf_counter_ns() - started) / 1000.0
                if response.version != versions[name]:
                    raise AssertionError(
                        f"{name} answered by version {response.version}, "
                        f"expected {versions[name]}"
                    )
    return latencies


def _compare(latencies: dict[str, np.ndarray]) -> dict[str, Any]:
    batched, unbatched = latencies["mlp-batched"], latencies["mlp-unbatched"]
    ratio = float(np.median(batched) / np.median(unbatched))
    low, high = interval95(
        len(batched),
        lambda picks: np.median(batched[picks], axis=1) / np.median(unbatched[picks], axis=1),
    )
    wins = float(np.mean(batched < unbatched))
    return {
        "batched": _summary(batched),
        "unbatched": _summary(unbatched),
        "p50_batched_over_unbatched": round(ratio, 4),
        "ci95": [round(low, 4), round(high, 4)],
        "pairs_batched_faster": round(wins, 3),
    }


def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.median(values)) / 1000.0, 4),
        "p99_ms": round(float(np.percentile(values, 99)) / 1000.0, 4),
    }
