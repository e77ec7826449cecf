"""Zero-downtime hot swap under an open-loop load.

At ``load_fraction`` (default 50 %) of the replica's measured capacity, Poisson
arrivals go to one endpoint while the control plane (the real ``Registry`` use
case, make-before-break) swaps the route ``swaps`` times between two versions,
then rolls the second version out from 0 to 100 % in ``rollout_steps`` steps.

Every request records its intended send time, its answer time and the version
that answered; every route change records when the call started and returned,
and which versions the route allowed before and after. A route state may be in
force from the moment its change call starts until the next change call returns
(replicas flip somewhere inside the call), so an answer is *disallowed* only if
its version is allowed by no route state that overlaps the request's lifetime.

Reported: failed requests (by status), disallowed answers, p50/p99 before the
first change, during changes (requests sent while a change call was running or
within ``settle_s`` after it), between changes and after the last one, plus p99
per change. The target compares p99 during changes with the steady p99: every
request sent while no change was in progress (before, between and after), so both
sides share the same minutes of a shared machine.

    python -m loadtests.swap_test                 # replica in its own process
    python -m loadtests.swap_test --swaps 4 --rollout-steps 4 --seconds-between 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np

from loadtests.tensors import predict_request
from modelplane.domain.models import RouteTarget
from modelplane.registry.use_cases import Registry
from modelplane.v1 import inference_pb2

ENDPOINT = "swap"
MODEL = "swapm"


@dataclass(frozen=True)
class Answer:
    intended: float
    received: float
    version: int
    error: str = ""


@dataclass(frozen=True)
class Change:
    started: float
    returned: float
    allowed: frozenset[int]
    label: str


@dataclass
class Recorder:
    answers: list[Answer] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, int(np.ceil(q / 100.0 * len(ordered)))) - 1]


# --------------------------------------------------------------------- client


async def _closed_loop_capacity(
    address: str, request: bytes, seconds: float, in_flight: int
) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        call: Any = channel.unary_unary(
            "/modelplane.v1.InferenceService/Predict",
            request_serializer=None,
            response_deserializer=None,
        )
        done = 0
        end = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < end:
                await call(request, timeout=10)
                done += 1

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / seconds


class _Stop(Protocol):
    def is_set(self) -> bool: ...


async def _open_loop(
    address: str,
    request: bytes,
    rate: float,
    stop: _Stop,
    recorder: Recorder,
    max_outstanding: int = 512,
    seed: int = 0,
) -> None:
    rng = random.Random(seed)
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
        call: Any = channel.unary_unary(
            "/modelplane.v1.InferenceService/Predict",
            request_serializer=None,
            response_deserializer=inference_pb2.PredictResponse.FromString,
        )
        slots = asyncio.Semaphore(max_outstanding)
        tasks: set[asyncio.Task[None]] = set()

        async def one(intended: float) -> None:
            try:
                response = await call(request, timeout=10)
                recorder.answers.append(Answer(intended, time.monotonic(), response.version))
            except grpc.aio.AioRpcError as error:
                recorder.answers.append(Answer(intended, time.monotonic(), 0, error.code().name))
            finally:
                slots.release()

        intended = time.monotonic()
        while not stop.is_set():
            intended += rng.expovariate(rate)
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            task = asyncio.create_task(one(intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)


def _client_process(
    address: str, request: bytes, rate: float, stop: Any, out: Any, ready: Any
) -> None:
    """The load in a process of its own, so the control-plane calls made by the
    parent never compete with it for the GIL (and never inflate its latencies)."""
    recorder = Recorder()

    async def run() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            await channel.channel_ready()
        ready.set()
        await _open_loop(address, request, rate, stop, recorder)

    asyncio.run(run())
    out.put([(a.intended, a.received, a.version, a.error) for a in recorder.answers])


@contextmanager
def _load(address: str, request: bytes, rate: float, recorder: Recorder) -> Iterator[None]:
    """Open-loop load from a child process while the body runs; answers land in ``recorder``."""
    ctx = mp.get_context("spawn")
    stop, ready, out = ctx.Event(), ctx.Event(), ctx.Queue()
    child = ctx.Process(
        target=_client_process, args=(address, request, rate, stop, out, ready),
        name="swap-load", daemon=True,
    )
    child.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the load process did not connect within 60 s")
        yield
    finally:
        stop.set()
        try:
            rows = out.get(timeout=60)  # before join: a big payload blocks the child's exit
            recorder.answers.extend(Answer(*row) for row in rows)
        finally:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join(timeout=5)


# ------------------------------------------------------------------- analysis


def disallowed(recorder: Recorder, initial: frozenset[int], start: float) -> list[Answer]:
    """Answers whose version no route state overlapping the request allowed."""
    # State k is in force from changes[k-1].started (state 0: from the start)
    # until changes[k].returned (the last state: forever).
    states: list[tuple[float, float, frozenset[int]]] = []
    begin = start
    allowed = initial
    for change in recorder.changes:
        states.append((begin, change.returned, allowed))
        begin, allowed = change.started, change.allowed
    states.append((begin, float("inf"), allowed))
    bad = []
    for answer in recorder.answers:
        if answer.error:
            continue
        ok = any(
            answer.version in versions
            for lo, hi, versions in states
            if lo <= answer.received and answer.intended <= hi
        )
        if not ok:
            bad.append(answer)
    return bad


def phases(recorder: Recorder, settle_s: float) -> dict[str, list[float]]:
    changes = recorder.changes
    first = changes[0].started if changes else float("inf")
    last = changes[-1].returned + settle_s if changes else float("inf")
    windows = [(c.started, c.returned + settle_s) for c in changes]
    out: dict[str, list[float]] = {"before": [], "during": [], "after": [], "between": []}
    for answer in recorder.answers:
        if answer.error:
            continue
        latency = (answer.received - answer.intended) * 1000.0
        if answer.intended < first:
            out["before"].append(latency)
        elif answer.intended >= last:
            out["after"].append(latency)
        elif any(lo <= answer.intended <= hi for lo, hi in windows):
            out["during"].append(latency)
        else:
            out["between"].append(latency)
    return out


def per_change(recorder: Recorder, settle_s: float) -> list[dict[str, Any]]:
    rows = []
    for change in recorder.changes:
        lat = [
            (a.received - a.intended) * 1000.0
            for a in recorder.answers
            if not a.error and change.started <= a.intended <= change.returned + settle_s
        ]
        rows.append(
            {
                "change": change.label,
                "call_ms": round((change.returned - change.started) * 1000.0, 1),
                "requests": len(lat),
                "p50_ms": _round(percentile(lat, 50)),
                "p99_ms": _round(percentile(lat, 99)),
            }
        )
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ----------------------------------------------------------------- scenario


def _route(registry: Registry, weights: dict[int, int], recorder: Recorder, label: str) -> None:
    targets = [RouteTarget(MODEL, w, version=v) for v, w in weights.items()]
    revision = registry.get_route(ENDPOINT).revision
    started = time.monotonic()
    registry.set_route(ENDPOINT, targets, revision)
    returned = time.monotonic()
    allowed = frozenset(v for v, w in weights.items() if w > 0)
    recorder.changes.append(Change(started, returned, allowed, label))


def prepare_versions(registry: Registry) -> tuple[int, int]:
    from modelplane.sample_models import linear_model

    first = registry.register_version(MODEL, "a", create_model=True, chunks=[linear_model(seed=1)])
    second = registry.register_version(MODEL, "b", create_model=True, chunks=[linear_model(seed=2)])
    registry.set_route(ENDPOINT, [RouteTarget(MODEL, 100, version=first.version)], 0)
    return first.version, second.version


def run_swap_test(
    registry: Registry,
    address: str,
    versions: tuple[int, int],
    *,
    swaps: int = 20,
    rollout_steps: int = 10,
    seconds_between: float = 1.0,
    steady_s: float = 3.0,
    load_fraction: float = 0.5,
    rate: float | None = None,
    settle_s: float = 0.2,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the scenario against a replica at ``address`` serving ``ENDPOINT`` = versions[0]."""
    a, b = versions
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    request = predict_request({"x": x}, endpoint=ENDPOINT).SerializeToString()
    capacity = None
    if rate is None:
        capacity = asyncio.run(_closed_loop_capacity(address, request, 3.0, 16))
        rate = capacity * load_fraction
        say(f"capacity {capacity:.0f} req/s (closed loop, 16 in flight); open loop at {rate:.0f}/s")
    recorder = Recorder()
    start = time.monotonic()
    with _load(address, request, rate, recorder):
        time.sleep(steady_s)
        current = a
        for i in range(swaps):
            current = b if current == a else a
            _route(registry, {current: 100}, recorder, f"swap {i + 1} -> v{current}")
            time.sleep(seconds_between)
        # Back on a, then b from 0 to 100 % in steps.
        if current != a:
            _route(registry, {a: 100}, recorder, f"reset -> v{a}")
            time.sleep(seconds_between)
        for step in range(1, rollout_steps + 1):
            share = round(100 * step / rollout_steps)
            weights = {a: 100 - share, b: share}
            _route(registry, weights, recorder, f"rollout {share}%")
            time.sleep(seconds_between)
        time.sleep(steady_s)
    bad = disallowed(recorder, frozenset({a}), start)
    errors = Counter(answer.error for answer in recorder.answers if answer.error)
    split = phases(recorder, settle_s)
    summary = {
        name: {
            "requests": len(values),
            "p50_ms": _round(percentile(values, 50)),
            "p99_ms": _round(percentile(values, 99)),
        }
        for name, values in split.items()
    }
    # Steady means no change in progress: before the first, after the last and the
    # gaps between changes. The gaps share the changes' minutes and so the machine's
    # noise of those minutes; "before" alone is one 5 s window that a quiet or a
    # busy moment of a shared host decides.
    steady_latencies = split["before"] + split["between"] + split["after"]
    steady = _round(percentile(steady_latencies, 99))
    summary["steady"] = {
        "requests": len(steady_latencies),
        "p50_ms": _round(percentile(steady_latencies, 50)),
        "p99_ms": steady,
    }
    before = summary["before"]["p99_ms"]
    during = summary["during"]["p99_ms"]
    result = {
        "capacity_rps": None if capacity is None else round(capacity, 1),
        "rate_rps": round(rate, 1),
        "swaps": swaps,
        "rollout_steps": rollout_steps,
        "requests": len(recorder.answers),
        "failed": sum(errors.values()),
        "failed_by_status": dict(errors),
        "disallowed": len(bad),
        "disallowed_examples": [vars(answer) for answer in bad[:5]],
        "phases": summary,
        "p99_during_over_steady": round(during / steady, 3) if during and steady else None,
        "p99_during_over_before": round(during / before, 3) if during and before else None,
        "changes": per_change(recorder, settle_s),
    }
    say(
        f"requests {result['requests']}  failed {result['failed']}  "
        f"disallowed {result['disallowed']}  p99 during/steady {result['p99_during_over_steady']}"
        f" (during/before {result['p99_during_over_before']})"
    )
    for name, row in summary.items():
        say(f"  {name:8s} n={row['requests']:6d}  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms")
    return result


@contextmanager
def _local_plane(workdir: Path, in_process: bool) -> Iterator[tuple[Registry, str]]:
    """Embedded Redis, the Registry use case in this process, one replica."""
    from modelplane.config import Settings
    from modelplane.registry.artifacts import ArtifactStore
    from modelplane.registry.embedded_redis import EmbeddedRedis
    from modelplane.registry.redis_store import RedisRegistryStore
    from modelplane.registry.replicas import ReplicaDirectory

    with ExitStack() as stack:
        redis_server = stack.enter_context(EmbeddedRedis(workdir / "redis"))
        prefix = "swap"
        settings = Settings(
            redis_url=redis_server.url, key_prefix=prefix, data_dir=workdir / "data",
            inference_port=0, telemetry_enabled=False,
        )
        store = RedisRegistryStore.from_url(redis_server.url, prefix)
        registry = Registry(
            store,
            ArtifactStore(settings.resolved_artifact_root),
            replicas=ReplicaDirectory(store._redis, prefix),
        )
        yield registry, _start_replica(stack, settings, in_process)


def _start_replica(stack: ExitStack, settings: Any, in_process: bool) -> str:
    if in_process:
        from modelplane.serving.replica import ReplicaRuntime

        runtime = ReplicaRuntime(settings, "swap-replica", reuse_port=False)
        stack.callback(runtime.close)
        return runtime.address
    from loadtests.procs import ServerProcess

    env = {
        "MODELPLANE_REDIS_URL": settings.redis_url,
        "MODELPLANE_DATA_DIR": str(settings.data_dir),
        "MODELPLANE_KEY_PREFIX": settings.key_prefix,
        "MODELPLANE_TELEMETRY_ENABLED": "false",
    }
    server = stack.enter_context(
        ServerProcess("loadtests.replica_server", ["--id", "swap-replica"], env=env,
                      startup_timeout=60.0)
    )
    return server.address


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--rollout-steps", type=int, default=10)
    parser.add_argument("--seconds-between", type=float, default=1.0)
    parser.add_argument("--steady-seconds", type=float, default=5.0)
    parser.add_argument("--load-fraction", type=float, default=0.5)
    parser.add_argument("--rate", type=float, help="fixed arrival rate instead of a fraction")
    parser.add_argument("--in-process", action="store_true", help="replica in this process")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="swap-") as tmp, _local_plane(
        Path(tmp), args.in_process
    ) as (registry, address):
        versions = prepare_versions(registry)
        # The replica must serve the route before the load starts.
        time.sleep(0.5)
        result = run_swap_test(
            registry, address, versions,
            swaps=args.swaps, rollout_steps=args.rollout_steps,
            seconds_between=args.seconds_between, steady_s=args.steady_seconds,
            load_fraction=args.load_fraction, rate=args.rate,
        )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    sys.exit(0 if result["failed"] == 0 and result["disallowed"] == 0 else 1)


if __name__ == "__main__":
    main()
