"""Load generator for modelplane.v1 Predict (and any unary gRPC method taking bytes).

Two ways to load a server:

- **closed loop**: ``concurrency`` requests always in flight; each worker sends the
  next request as soon as the previous one answers. Measures what the server sustains.
- **open loop**: requests arrive as a Poisson process at ``rate`` per second whatever
  the server does. Latency is measured from each request's *intended* send time, so a
  stall shows up in every request it delayed, not only in the one that was on the wire
  (the "coordinated omission" correction). ``concurrency`` caps outstanding requests so
  memory stays bounded; a capped request still counts from its intended time.

The load is spread over ``processes`` client processes (spawned, each with its own
``grpc.aio`` channel) so one Python interpreter is not the bottleneck. Each records into
an HDR histogram (microseconds); the parent merges them. Requests sent during the
warm-up are not recorded.

    python -m loadtests.loadgen --address 127.0.0.1:50051 --endpoint demo \\
        --input x:float32:1x16 --mode closed --concurrency 16 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import queue
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any, Literal

import numpy as np
from hdrh.histogram import HdrHistogram

from loadtests.tensors import predict_request
from modelplane.v1 import inference_pb2

PREDICT_METHOD = "/modelplane.v1.InferenceService/Predict"

# Histogram range in microseconds: 1 us .. 60 s, 3 significant digits (0.1% error).
LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3

Clock = Callable[[], float]
Send = Callable[[], Awaitable[None]]
Mode = Literal["closed", "open"]


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_seconds(histogram: HdrHistogram, seconds: float) -> None:
    """Record a latency given in seconds, clamped into the histogram's range."""
    micros = round(seconds * 1e6)
    histogram.record_value(min(max(micros, LOWEST_US), HIGHEST_US))


def merge_histograms(encoded: list[bytes | str]) -> HdrHistogram:
    """Merge histograms encoded by :meth:`HdrHistogram.encode` (one per process)."""
    merged = new_histogram()
    for item in encoded:
        merged.add(HdrHistogram.decode(item))
    return merged


def error_name(exc: BaseException) -> str:
    """A stable name for a failed request: the gRPC status code when there is one."""
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            value = code()
        except Exception:  # a .code attribute that is not gRPC's: fall back to the type
            value = None
        name = getattr(value, "name", None)
        if isinstance(name, str):
            return name
    if isinstance(exc, asyncio.TimeoutError):
        return "DEADLINE_EXCEEDED"
    return type(exc).__name__


@dataclass
class WorkerStats:
    """What one client process measured inside the measurement window."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    timeline: dict[int, HdrHistogram] = field(default_factory=dict)
    """Latencies by whole second since the measurement started, for latency-over-time."""

    def record(self, seconds: float, offset_s: float) -> None:
        """One success of ``seconds`` latency, ``offset_s`` into the measurement window."""
        self.sent += 1
        record_seconds(self.histogram, seconds)
        bucket = self.timeline.get(int(offset_s))
        if bucket is None:
            bucket = self.timeline[int(offset_s)] = new_histogram()
        record_seconds(bucket, seconds)

    def to_wire(self) -> dict[str, Any]:
        return {
            "histogram": self.histogram.encode(),
            "errors": dict(self.errors),
            "sent": self.sent,
            "timeline": {second: h.encode() for second, h in self.timeline.items()},
        }


def poisson_schedule(rate: float, start: float, end: float, rng: random.Random) -> Iterator[float]:
    """Intended send times of a Poisson process of ``rate`` per second in [start, end)."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    t = start
    while True:
        t += rng.expovariate(rate)
        if t >= end:
            return
        yield t


async def run_closed_loop(
    send: Send,
    concurrency: int,
    measure_start: float,
    end: float,
    clock: Clock = time.monotonic,
) -> WorkerStats:
    """``concurrency`` workers, each sending back to back until ``end``.

    A request is recorded when it was sent at or after ``measure_start`` and answered
    by ``end``; a request still in flight at ``end`` is neither a success nor an error.
    """
    stats = WorkerStats()

    async def worker() -> None:
        while True:
            sent_at = clock()
            if sent_at >= end:
                return
            measured = sent_at >= measure_start
            try:
                await send()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if measured:
                    stats.errors[error_name(exc)] += 1
                continue
            done = clock()
            if measured and done <= end:
                stats.record(done - sent_at, done - measure_start)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return stats


async def run_open_loop(
    send: Send,
    schedule: Iterator[float],
    measure_start: float,
    max_outstanding: int,
    clock: Clock = time.monotonic,
) -> WorkerStats:
    """Fire one request at each intended time of ``schedule``; latency counts from it.

    When the client falls behind (the loop was busy, or ``max_outstanding`` requests are
    already waiting), the request goes out late but its latency still starts at its
    intended time: that is the coordinated-omission correction. Every request sent is
    awaited, so the slow tail at the end of the run is not dropped.
    """
    stats = WorkerStats()
    slots = asyncio.Semaphore(max_outstanding)
    tasks: set[asyncio.Task[None]] = set()

    async def one(intended: float) -> None:
        measured = intended >= measure_start
        try:
            await send()
        except Exception as exc:
            if measured:
                stats.errors[error_name(exc)] += 1
            return
        finally:
            slots.release()
        if measured:
            done = clock()
            stats.record(done - intended, done - measure_start)

    for intended in schedule:
        delay = intended - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        task = asyncio.create_task(one(intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return stats


@dataclass(frozen=True)
class Target:
    """Where to send and what: a serialized request, so any request factory works."""

    address: str
    request: bytes
    method: str = PREDICT_METHOD
    metadata: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 10.0

    @classmethod
    def predict(
        cls,
        address: str,
        inputs: Mapping[str, np.ndarray],
        *,
        endpoint: str | None = None,
        model: str | None = None,
        version: int | None = None,
    ) -> Target:
        """Predict on ``endpoint`` (or ``model``, optionally a pinned ``version``)."""
        request = predict_request(inputs, endpoint=endpoint, model=model, version=version)
        return cls(address, request.SerializeToString())


@dataclass(frozen=True)
class LoadSpec:
    mode: Mode = "closed"
    concurrency: int = 16
    """Closed loop: requests in flight in total. Open loop: cap on outstanding requests."""
    rate: float = 0.0
    """Open loop only: total arrivals per second over all processes."""
    duration_s: float = 10.0
    warmup_s: float = 2.0
    processes: int = 2
    seed: int = 0
    startup_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.mode not in ("closed", "open"):
            raise ValueError(f"mode must be 'closed' or 'open', got {self.mode!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.processes < 1:
            raise ValueError(f"processes must be >= 1, got {self.processes}")
        if self.mode == "open" and self.rate <= 0:
            raise ValueError(f"open loop needs rate > 0, got {self.rate}")
        if self.duration_s <= 0 or self.warmup_s < 0:
            raise ValueError("duration_s must be > 0 and warmup_s >= 0")


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _make_send(channel: Any, target: Target) -> Send:
    call = channel.unary_unary(
        target.method,
        request_serializer=None,  # the request is already bytes: no per-call encoding
        response_deserializer=None,
    )
    check = target.method == PREDICT_METHOD
    metadata = target.metadata or None

    async def send() -> None:
        raw = await call(target.request, timeout=target.timeout_s, metadata=metadata)
        # A reply that parses but carries no output is a server bug, not a success.
        if check and not inference_pb2.PredictResponse.FromString(raw).outputs:
            raise ValueError("empty PredictResponse")

    return send


async def _worker_main(
    target: Target,
    spec: LoadSpec,
    share: int,
    index: int,
    ready: mp.Queue[Any],
    go: EventType,
    start_at: Any,
) -> WorkerStats:
    import grpc

    async with grpc.aio.insecure_channel(target.address) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=spec.startup_timeout_s)
        ready.put(("ready", index))
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, go.wait, spec.startup_timeout_s):
            raise TimeoutError("no start signal from the parent")
        start = float(start_at.value)
        measure_start = start + spec.warmup_s
        end = measure_start + spec.duration_s
        delay = start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        send = _make_send(channel, target)
        if spec.mode == "closed":
            return await run_closed_loop(send, share, measure_start, end)
        rng = random.Random(spec.seed * 1_000_003 + index)
        schedule = poisson_schedule(spec.rate / spec.processes, start, end, rng)
        return await run_open_loop(send, schedule, measure_start, max(share, 1))


def _worker_entry(
    target: Target,
    spec: LoadSpec,
    share: int,
    index: int,
    ready: mp.Queue[Any],
    results: mp.Queue[Any],
    go: EventType,
    start_at: Any,
) -> None:
    try:
        stats = asyncio.run(_worker_main(target, spec, share, index, ready, go, start_at))
        results.put(("ok", index, stats.to_wire()))
    except BaseException as exc:
        ready.put(("failed", index))
        results.put(("failed", index, f"{type(exc).__name__}: {exc}"))


def summarize_timeline(encoded: Mapping[int, list[bytes | str]]) -> list[dict[str, Any]]:
    """Per second of the measurement: completions, p50 and p99 in milliseconds."""
    rows = []
    for second in sorted(encoded):
        h = merge_histograms(encoded[second])
        rows.append(
            {
                "second": second,
                "completed": h.get_total_count(),
                "p50_ms": round(h.get_value_at_percentile(50.0) / 1000.0, 4),
                "p99_ms": round(h.get_value_at_percentile(99.0) / 1000.0, 4),
            }
        )
    return rows


def summarize(
    histogram: HdrHistogram,
    errors: Counter[str],
    spec: LoadSpec,
    address: str,
    requests: int,
    timeline: Mapping[int, list[bytes | str]] | None = None,
) -> dict[str, Any]:
    """The result dict: throughput, percentiles in milliseconds, errors, settings."""

    def ms(value_us: float) -> float:
        return round(value_us / 1000.0, 4)

    count = histogram.get_total_count()
    return {
        "mode": spec.mode,
        "address": address,
        "concurrency": spec.concurrency,
        "rate": spec.rate if spec.mode == "open" else None,
        "processes": spec.processes,
        "duration_s": spec.duration_s,
        "warmup_s": spec.warmup_s,
        "requests": requests,
        "errors": sum(errors.values()),
        "error_codes": dict(errors),
        "throughput_rps": round(requests / spec.duration_s, 2),
        "p50_ms": ms(histogram.get_value_at_percentile(50.0)) if count else None,
        "p90_ms": ms(histogram.get_value_at_percentile(90.0)) if count else None,
        "p99_ms": ms(histogram.get_value_at_percentile(99.0)) if count else None,
        "p999_ms": ms(histogram.get_value_at_percentile(99.9)) if count else None,
        "mean_ms": ms(histogram.get_mean_value()) if count else None,
        "max_ms": ms(histogram.get_max_value()) if count else None,
        "histogram": histogram.encode().decode("ascii") if count else None,
        "timeline": summarize_timeline(timeline) if timeline else [],
    }


def run_load(target: Target, spec: LoadSpec) -> dict[str, Any]:
    """Run ``spec`` against ``target`` from ``spec.processes`` client processes.

    Every process connects first; the clock starts only when all are ready, so they
    warm up and measure over the same window.
    """
    processes = min(spec.processes, spec.concurrency)
    if processes != spec.processes:
        spec = LoadSpec(**{**asdict(spec), "processes": processes})
    # spawn, not fork: a forked gRPC runtime is not safe to use in the child.
    ctx = mp.get_context("spawn")
    ready: mp.Queue[Any] = ctx.Queue()
    results: mp.Queue[Any] = ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    workers = [
        ctx.Process(
            target=_worker_entry,
            args=(target, spec, share, i, ready, results, go, start_at),
            name=f"loadgen-{i}",
            daemon=True,
        )
        for i, share in enumerate(split(spec.concurrency, processes))
    ]
    for w in workers:
        w.start()
    failures: list[str] = []
    try:
        deadline = time.monotonic() + spec.startup_timeout_s
        pending = processes
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{pending} load processes did not connect to {target.address}")
            try:
                status, index = ready.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                dead = [w.name for w in workers if w.exitcode is not None]
                if dead:  # died before it could report (e.g. failed to import)
                    raise RuntimeError(f"load processes exited during start-up: {dead}") from None
                continue
            if status != "ready":
                break  # the failure itself arrives on the results queue
            pending -= 1
        # A short lead so every process is past its wait before the clock starts.
        start_at.value = time.monotonic() + 0.2
        go.set()
        histograms: list[bytes | str] = []
        timeline: dict[int, list[bytes | str]] = {}
        errors: Counter[str] = Counter()
        requests = 0
        wait = 0.2 + spec.warmup_s + spec.duration_s + target.timeout_s + 30.0
        deadline = time.monotonic() + wait
        for _ in range(processes):
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                status, index, payload = results.get(timeout=remaining)
            except queue.Empty:
                failures.append("a load process sent no result in time")
                break
            if status != "ok":
                failures.append(f"process {index}: {payload}")
                continue
            histograms.append(payload["histogram"])
            for second, encoded in payload["timeline"].items():
                timeline.setdefault(int(second), []).append(encoded)
            errors.update(payload["errors"])
            requests += payload["sent"]
    finally:
        go.set()  # release anyone still waiting, then stop every process by handle
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
                w.join(timeout=5)
            if w.is_alive():
                w.kill()
                w.join(timeout=5)
    if failures:
        raise RuntimeError("load generation failed: " + "; ".join(failures))
    return summarize(
        merge_histograms(histograms), errors, spec, target.address, requests, timeline
    )


_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64, "int32": np.int32}


def parse_input(text: str, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """``name:dtype:AxB`` -> a random tensor of that shape (e.g. ``x:float32:1x16``)."""
    try:
        name, dtype, dims = text.split(":")
        shape = tuple(int(d) for d in dims.split("x"))
        np_dtype = _DTYPES[dtype]
    except (ValueError, KeyError) as exc:
        raise argparse.ArgumentTypeError(
            f"--input: expected name:dtype:AxB with dtype in {sorted(_DTYPES)}, got {text!r}"
        ) from exc
    return name, rng.standard_normal(shape).astype(np_dtype)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Load a modelplane.v1 Predict server.")
    parser.add_argument("--address", required=True, help="host:port")
    named = parser.add_mutually_exclusive_group(required=True)
    named.add_argument("--endpoint")
    named.add_argument("--model")
    parser.add_argument("--version", type=int)
    parser.add_argument("--input", action="append", required=True, help="name:dtype:AxB")
    parser.add_argument("--mode", choices=["closed", "open"], default="closed")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    inputs = dict(parse_input(text, rng) for text in args.input)
    target = Target.predict(
        args.address, inputs, endpoint=args.endpoint, model=args.model, version=args.version
    )
    result = run_load(
        target,
        LoadSpec(
            mode=args.mode,
            concurrency=args.concurrency,
            rate=args.rate,
            duration_s=args.seconds,
            warmup_s=args.warmup,
            processes=args.processes,
        ),
    )
    text = json.dumps(
        {k: v for k, v in result.items() if k not in ("histogram", "timeline")}, indent=2
    )
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
