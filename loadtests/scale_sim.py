"""Scale simulation: a registry of 1,000 endpoints and 10,000 versions.

Measures, against a real Redis and the real control-plane gRPC server:

1. list and search latency (ListModels, ListRoutes, ListVersions with and without a
   ``where`` filter, GetRoute), p50/p99 over repeated calls;
2. route-change fan-out: ``--subscribers`` simulated replicas (the real
   ``SnapshotWatcher`` + ``RouteTable`` a replica runs, without onnxruntime), spread
   over ``--processes`` worker processes; for each route change, the time from the
   SetRoute call returning until every subscriber has applied the new generation
   (p50/p99 over changes), plus each subscriber's own snapshot read + table build;
3. memory of one replica's route cache (snapshot + route table) for this registry,
   measured with tracemalloc.

    python -m loadtests.scale_sim [--endpoints 1000] [--versions 10000]
        [--subscribers 200] [--processes 4] [--changes 20]

Results go to loadtests/results/scale_sim-<stamp>.json. On a 2-core machine all
subscribers share two cores and one Redis, so the fan-out figure is an upper bound
for a cluster where each replica has its own CPU; the per-subscriber apply time is
the part that does not shrink with more machines.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.report_file import write_report
from modelplane.client import ModelplaneClient
from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.domain.models import DataType, Lineage, RouteTarget, Signature, TensorSpec
from modelplane.registry.embedded_redis import EmbeddedRedis
from modelplane.registry.redis_connect import connect
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.routing.table import RouteTable
from modelplane.routing.watcher import SnapshotWatcher

PREFIX = "sim"
SIG = Signature(
    inputs=(TensorSpec("x", DataType.FLOAT32, (-1, 16)),),
    outputs=(TensorSpec("y", DataType.FLOAT32, (-1, 4)),),
)
TEAMS = ("risk", "growth", "search", "ads")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


# --------------------------------------------------------------------- populate


def populate(store: RedisRegistryStore, endpoints: int, versions: int) -> tuple[int, int]:
    """``versions`` versions over endpoints/2 models; ``endpoints`` routes. Returns counts."""
    models = max(1, endpoints // 2)
    per_model = max(1, versions // models)
    for m in range(models):
        name = f"model-{m:04d}"
        store.create_model(name, "", 0)
        for v in range(per_model):
            lineage = Lineage(
                metrics={"auc": 0.5 + (v % 50) / 100},
                tags={"team": TEAMS[m % len(TEAMS)]},
                params={"depth": str(v % 8)},
            )
            store.add_version(name, f"{m:032x}{v:032x}", 1024, SIG, "", 0, lineage=lineage)
    for e in range(endpoints):
        model = f"model-{e % models:04d}"
        targets = (RouteTarget(model, 90, version=1), RouteTarget(model, 10, version=2))
        store.set_route(f"endpoint-{e:04d}", targets if per_model > 1 else targets[:1], 0, 0)
    return models, models * per_model


# ------------------------------------------------------------------------ list


def time_calls(call: Any, repeats: int) -> dict[str, float]:
    call()  # warm
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return summary_ms(samples)


def list_latencies(client: ModelplaneClient, repeats: int) -> dict[str, dict[str, float]]:
    return {
        "ListModels (all)": time_calls(client.list_models, repeats),
        "ListRoutes (all)": time_calls(client.list_routes, repeats),
        "ListVersions (one model)": time_calls(
            lambda: client.list_versions("model-0007"), repeats * 5
        ),
        "ListVersions where metrics.auc>0.9 and tags.team=search": time_calls(
            lambda: client.list_versions("model-0006", "metrics.auc>0.9 and tags.team=search"),
            repeats * 5,
        ),
        "GetRoute": time_calls(lambda: client.get_route("endpoint-0500"), repeats * 5),
    }


# -------------------------------------------------------------------- fan-out


def subscriber_process(
    redis_url: str, count: int, ready: Any, results: Any, stop: Any, index: int
) -> None:
    """Runs ``count`` watchers; reports (generation, applied wall time, apply seconds)."""
    client = connect(redis_url, decode_responses=True, socket_timeout=30.0)
    store = RedisRegistryStore(client, PREFIX)
    lock = threading.Lock()
    applied: list[tuple[int, float, float]] = []
    watchers = []

    def make_callback() -> Any:
        def on_snapshot(snapshot: Any) -> None:
            began = time.perf_counter()
            RouteTable.from_snapshot(snapshot)  # what a replica builds and swaps in
            with lock:
                applied.append((snapshot.generation, time.time(), time.perf_counter() - began))

        return on_snapshot

    for _ in range(count):
        timed_load = store.snapshot

        def load(load: Any = timed_load) -> Any:
            return load()

        watcher = SnapshotWatcher(load, client, store.changes_channel, make_callback())
        watcher.start()
        watchers.append(watcher)
    ready.put(index)
    while not stop.is_set():
        time.sleep(0.2)
        with lock:
            batch, applied[:] = list(applied), []
        if batch:
            results.put(batch)
    for watcher in watchers:
        watcher.stop()
    with lock:
        if applied:
            results.put(list(applied))
    results.put(None)


def fan_out(
    redis_url: str, store: RedisRegistryStore, subscribers: int, processes: int, changes: int
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [subscribers // processes + (1 if i < subscribers % processes else 0)
              for i in range(processes)]
    workers = [
        ctx.Process(target=subscriber_process, args=(redis_url, n, ready, results, stop, i))
        for i, n in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=600)
    # generation -> times subscribers applied it
    seen: dict[int, list[float]] = {}
    apply_s: list[float] = []

    def drain(timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                batch = results.get(timeout=0.1)
            except Exception:
                continue
            if batch is None:
                continue
            for generation, at, took in batch:
                seen.setdefault(generation, []).append(at)
                apply_s.append(took)

    drain(1.0)
    apply_s.clear()
    until_all: list[float] = []
    per_subscriber: list[float] = []
    route = store.get_route("endpoint-0001")
    for i in range(changes):
        weights = (50 + i % 40, 50 - i % 40)
        targets = (
            RouteTarget(route.targets[0].model, weights[0], version=1),
            RouteTarget(route.targets[0].model, weights[1], version=2),
        )
        began = time.time()
        route = store.set_route("endpoint-0001", targets, route.revision, 0)
        generation = store.current_generation()
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            # Later generations count too: a subscriber that skipped straight to a
            # newer snapshot has applied this change.
            done = sum(len(times) for g, times in seen.items() if g >= generation)
            if done >= subscribers:
                break
            drain(0.05)
        firsts = sorted(t for g, times in seen.items() if g >= generation for t in times)
        if len(firsts) < subscribers:
            raise RuntimeError(f"change {i}: only {len(firsts)}/{subscribers} applied in 900 s")
        until_all.append(firsts[subscribers - 1] - began)
        per_subscriber.extend(t - began for t in firsts[:subscribers])
        seen.clear()
    stop.set()
    for worker in workers:
        worker.join(60)
    return {
        "subscribers": subscribers,
        "processes": processes,
        "changes": changes,
        "until_all_applied": summary_ms(until_all),
        "until_each_applied": summary_ms(per_subscriber),
        "table_build_per_subscriber": summary_ms(apply_s) if apply_s else {},
    }


# --------------------------------------------------------------------- memory


def route_cache_memory(store: RedisRegistryStore) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    snapshot = store.snapshot()
    after_snapshot = tracemalloc.get_traced_memory()[0]
    table = RouteTable.from_snapshot(snapshot)
    after_table = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    began = time.perf_counter()
    for _ in range(5):
        RouteTable.from_snapshot(store.snapshot())
    read_and_build = (time.perf_counter() - began) / 5
    return {
        "snapshot_bytes": after_snapshot - before,
        "route_table_bytes": after_table - after_snapshot,
        "total_mib": round((after_table - before) / 2**20, 2),
        "routes": len(snapshot.routes),
        "versions": len(snapshot.versions),
        "snapshot_read_and_build_ms": round(read_and_build * 1000, 1),
        "table_endpoints": len(table.endpoints()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=10000)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        client = connect(redis.url, socket_timeout=60.0)
        store = RedisRegistryStore(client, PREFIX)
        began = time.perf_counter()
        models, versions = populate(store, args.endpoints, args.versions)
        result["populate_s"] = round(time.perf_counter() - began, 1)
        result["registry"] = {"models": models, "versions": versions, "endpoints": args.endpoints}
        print(f"populated {models} models, {versions} versions, {args.endpoints} endpoints "
              f"in {result['populate_s']} s", flush=True)
        control = ControlPlane(
            Settings(data_dir=Path(tmp), key_prefix=PREFIX, control_port=0, host="127.0.0.1"),
            redis.url,
        )
        control.start()
        try:
            with ModelplaneClient(control.address) as grpc_client:
                result["list_latency"] = list_latencies(grpc_client, args.repeats)
        finally:
            control.stop()
        print(json.dumps(result["list_latency"], indent=1), flush=True)
        result["route_cache_memory"] = route_cache_memory(store)
        print(json.dumps(result["route_cache_memory"], indent=1), flush=True)
        result["fan_out"] = fan_out(
            redis.url, store, args.subscribers, args.processes, args.changes
        )
        print(json.dumps(result["fan_out"], indent=1), flush=True)
    out = write_report(result, "scale_sim")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
