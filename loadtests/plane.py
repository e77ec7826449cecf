"""Control-plane figures, measured on real processes without Ray.

An embedded Redis, ``modelplane control-plane`` as a child process and serving
replicas as child processes (``loadtests.replica_server``, the same ``ReplicaRuntime``
Serve hosts), each on its own port so every replica can be asked separately:

- control plane idle RSS;
- time from the end of ``register`` to the first request served by the new version
  (pinned-version Predict, on every replica);
- time from ``SetRoute`` returning to every replica serving the new route;
- the heavy MLP at 64 in flight, batched against unbatched (two replicas that differ
  only in ``MODELPLANE_BATCH_MAX_SIZE``), when the data plane has batching.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil

from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.models import MODELS, write_model
from loadtests.procs import ServerProcess
from loadtests.tensors import predict_request
from modelplane.client import ModelplaneClient
from modelplane.sample_models import linear_model
from modelplane.v1 import inference_pb2, inference_pb2_grpc

_CONTROL_READY = re.compile(rb"^control plane\s+\S+:(\d+)$", re.MULTILINE)
_RETRY = (
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.FAILED_PRECONDITION,
)
Say = Callable[[str], None]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with 50 samples p99 is the largest, nothing smaller."""
    ordered = sorted(values)
    rank = max(1, int(np.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


@dataclass
class Plane:
    redis_url: str
    data_dir: Path
    control: ServerProcess
    stack: ExitStack

    @property
    def env(self) -> dict[str, str]:
        return {
            "MODELPLANE_REDIS_URL": self.redis_url,
            "MODELPLANE_DATA_DIR": str(self.data_dir),
            "MODELPLANE_KEY_PREFIX": "bench",
            "MODELPLANE_TELEMETRY_ENABLED": "false",
        }

    def replica(self, replica_id: str, extra_env: dict[str, str] | None = None) -> ServerProcess:
        """A replica process, not started yet: enter it as a context manager."""
        return ServerProcess(
            "loadtests.replica_server",
            ["--id", replica_id],
            env={**self.env, **(extra_env or {})},
            startup_timeout=60.0,
        )

    def client(self) -> ModelplaneClient:
        return ModelplaneClient(self.control.address)


@contextmanager
def plane(workdir: Path) -> Iterator[Plane]:
    from modelplane.registry.embedded_redis import EmbeddedRedis

    with ExitStack() as stack:
        redis_server = stack.enter_context(EmbeddedRedis(workdir / "redis"))
        env = {
            "MODELPLANE_REDIS_URL": redis_server.url,
            "MODELPLANE_DATA_DIR": str(workdir / "data"),
            "MODELPLANE_KEY_PREFIX": "bench",
            "MODELPLANE_CONTROL_PORT": "0",
        }
        control = stack.enter_context(
            ServerProcess(
                "modelplane.cli", ["control-plane"], env=env, ready=_CONTROL_READY,
                startup_timeout=60.0,
            )
        )
        yield Plane(redis_server.url, workdir / "data", control, stack)


def start_all(stack: ExitStack, p: Plane, names: list[str]) -> list[ServerProcess]:
    """Replica processes started at once (their start-up is mostly imports), each
    stopped when ``stack`` closes."""
    servers = [p.replica(f"bench-{name}") for name in names]
    for server in servers:
        stack.callback(server.stop)
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(ServerProcess.start, servers))
    return servers


def _stub(address: str) -> tuple[grpc.Channel, inference_pb2_grpc.InferenceServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, inference_pb2_grpc.InferenceServiceStub(channel)


def wait_served(
    address: str,
    request: inference_pb2.PredictRequest,
    accept: Callable[[inference_pb2.PredictResponse], bool],
    timeout_s: float = 30.0,
) -> float:
    """Predict back to back until ``accept`` holds; the monotonic time it first did."""
    channel, stub = _stub(address)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                response = stub.Predict(request, timeout=5)
            except grpc.RpcError as exc:
                if exc.code() not in _RETRY:
                    raise
                time.sleep(0.001)
                continue
            if accept(response):
                return time.monotonic()
    finally:
        channel.close()
    raise TimeoutError(f"{address} did not serve the change within {timeout_s}s")


def _all_served(
    addresses: list[str],
    request: inference_pb2.PredictRequest,
    accept: Callable[[inference_pb2.PredictResponse], bool],
) -> list[float]:
    """Poll every replica at once (one thread each); when each first served it."""
    done: list[float | BaseException] = [0.0] * len(addresses)

    def poll(i: int, address: str) -> None:
        try:
            done[i] = wait_served(address, request, accept)
        except BaseException as exc:
            done[i] = exc

    threads = [threading.Thread(target=poll, args=(i, a)) for i, a in enumerate(addresses)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for value in done:
        if isinstance(value, BaseException):
            raise value
    return [float(v) for v in done]  # type: ignore[arg-type]


def _is_version(version: int, response: inference_pb2.PredictResponse) -> bool:
    return response.version == version


def control_plane_idle_rss(p: Plane, settle_s: float = 3.0) -> dict[str, Any]:
    time.sleep(settle_s)
    proc = psutil.Process(p.control.pid)
    info = proc.memory_info()
    return {"rss_mb": round(info.rss / 1e6, 1), "target_mb": 200}


def register_to_served(p: Plane, addresses: list[str], rounds: int, say: Say) -> dict[str, Any]:
    x = MODELS["tiny"].sample_input()
    times: list[float] = []
    with p.client() as client:
        for i in range(rounds):
            version = client.register("fresh", linear_model(seed=100 + i))
            ended = time.monotonic()
            request = predict_request({"x": x}, model="fresh", version=version.version)
            served = _all_served(addresses, request, partial(_is_version, version.version))
            times.append(max(served) - ended)
    say(f"  register -> served on every replica: median {statistics.median(times) * 1000:.0f} ms")
    return {
        "rounds": rounds,
        "median_ms": round(statistics.median(times) * 1000, 1),
        "max_ms": round(max(times) * 1000, 1),
        "samples_ms": [round(t * 1000, 1) for t in times],
    }


def route_propagation(p: Plane, addresses: list[str], changes: int, say: Say) -> dict[str, Any]:
    x = MODELS["tiny"].sample_input()
    request = predict_request({"x": x}, endpoint="flip")
    times: list[float] = []
    with p.client() as client:
        versions = [client.register("flip", linear_model(seed=s)).version for s in (1, 2)]
        client.set_route("flip", [("flip", versions[0], 100)])
        _all_served(addresses, request, partial(_is_version, versions[0]))
        for i in range(changes):
            target = versions[(i + 1) % 2]
            client.set_route("flip", [("flip", target, 100)])
            returned = time.monotonic()
            served = _all_served(addresses, request, partial(_is_version, target))
            times.append(max(max(served) - returned, 0.0))
            time.sleep(0.02)
    ms = [t * 1000 for t in times]
    result = {
        "replicas": len(addresses),
        "changes": changes,
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "target_p99_ms": 100,
        "samples_ms": [round(v, 2) for v in ms],
    }
    say(f"  SetRoute -> every replica: p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms")
    return result


def batching(
    p: Plane, workdir: Path, seconds: float, rounds: int, in_flight: int, say: Say
) -> dict[str, Any]:
    """The heavy MLP at ``in_flight`` requests, on a batching replica and one with
    batching off, in alternating order."""
    from modelplane.config import Settings

    if "batch_max_size" not in Settings.model_fields:
        msg = "skipped: this data plane has no batching setting (batch_max_size)"
        say(f"  batching {msg}")
        return {"skipped": msg}
    model_path = write_model("mlp", workdir / "models")
    with p.client() as client:
        version = client.register("mlp", model_path)
        client.set_route("mlp", [("mlp", version.version, 100)])
    configs = {"batched": {}, "unbatched": {"MODELPLANE_BATCH_MAX_SIZE": "1"}}
    x = MODELS["mlp"].sample_input()
    request = predict_request({"x": x}, endpoint="mlp")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(p.replica(f"bench-{name}", env))
            for name, env in configs.items()
        }
        for server in servers.values():
            wait_served(server.address, request, lambda r: len(r.outputs) > 0, timeout_s=60)
        spec = LoadSpec(
            mode="closed", concurrency=in_flight, duration_s=seconds, warmup_s=1.0, processes=2
        )
        names = list(configs)
        for r in range(rounds):
            for name in names[r % 2 :] + names[: r % 2]:
                result = run_load(Target(servers[name].address, request.SerializeToString()), spec)
                runs[name].append(result)
                say(
                    f"  mlp {name}: {result['throughput_rps']} req/s  p50 {result['p50_ms']} ms"
                    f"  p99 {result['p99_ms']} ms  errors {result['errors']}"
                )
    summary = {
        name: {
            "throughput_rps": statistics.median(r["throughput_rps"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] or 0.0 for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] or 0.0 for r in rs),
            "errors": sum(r["errors"] for r in rs),
        }
        for name, rs in runs.items()
    }
    unbatched = summary["unbatched"]["throughput_rps"]
    ratio = summary["batched"]["throughput_rps"] / unbatched if unbatched else None
    return {
        "in_flight": in_flight,
        "rounds": rounds,
        "summary": summary,
        "batched_over_unbatched": round(ratio, 3) if ratio else None,
        "target": 2.0,
    }


def run_plane(
    workdir: Path,
    *,
    changes: int,
    register_rounds: int,
    batch_seconds: float,
    batch_rounds: int,
    say: Say = print,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with plane(workdir) as p:
        say("control plane (own process) idle")
        results["control_plane_idle"] = control_plane_idle_rss(p)
        say(f"  RSS {results['control_plane_idle']['rss_mb']} MB")
        with ExitStack() as replicas:
            addresses = [server.address for server in start_all(replicas, p, ["r0", "r1"])]
            say("register -> first request served by the new version (2 replicas)")
            results["register_to_served"] = register_to_served(p, addresses, register_rounds, say)
            say(f"SetRoute -> every replica serving the new route ({changes} changes, 2 replicas)")
            results["route_propagation"] = route_propagation(p, addresses, changes, say)
        if batch_rounds > 0:
            say("heavy MLP at 64 in flight: batched vs unbatched")
            results["batching"] = batching(p, workdir, batch_seconds, batch_rounds, 64, say)
    return results
