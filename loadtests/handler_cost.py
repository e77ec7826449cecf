"""What modelplane's handler chain costs per request, next to a bare handler, in process.

Over gRPC the per-call work of grpc.aio itself dominates a tiny model's request
and the shared machine moves throughput by 5-10 % between runs, so a change of
a few microseconds on the predict path cannot be seen there. This calls the
handlers directly instead, without a socket:

- **modelplane**: a real ``ReplicaRuntime`` (Redis, control plane, routing,
  telemetry on with the default settings), its ``ModelInfer`` and ``Predict``
  handlers wrapped exactly as its server serves them (error mapping, limits,
  pre-encoded answers), the request routed through an endpoint;
- **bare**: the handlers of ``bare_oip_server`` / ``bare_server``, on the same
  ONNX file.

Each call deserializes the request bytes, awaits the handler and serializes the
answer, as grpc.aio does around a handler. Both run in segments of ``--segment``
calls, alternating (order swapped every pair), and each segment is timed with
the thread's own CPU clock, so both sides of a pair share the machine's moment.
The figure is modelplane's CPU per request over the bare handler's, with a
bootstrap interval over the pairs.

    python -m loadtests.handler_cost --pairs 60 --segment 1000
    python -m loadtests.handler_cost --smoke
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

if not __package__:
    # Run as a file path (python loadtests/handler_cost.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.bare_oip_server import BareOip
from loadtests.bare_server import BarePredictor
from loadtests.bootstrap import interval95
from loadtests.models import MODELS, write_model
from loadtests.oip_vs_bare import infer_request
from loadtests.ort import session
from loadtests.report_file import write_report
from loadtests.tensors import predict_request
from modelplane.codec.oip import decode_outputs
from modelplane.oip import grpc_service_pb2 as oip_pb
from modelplane.v1 import inference_pb2

ENDPOINT = "bench"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
PREDICT = "/modelplane.v1.InferenceService/Predict"
# What a grpc client sends along with every call.
CLIENT_METADATA = (("user-agent", f"grpc-python/{grpc.__version__} (linux; chttp2)"),)


class DirectCallContext:
    """The parts of a grpc.aio servicer context the handlers use."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return CLIENT_METADATA

    def time_remaining(self) -> float:
        return 10.0  # the load generator's deadline

    async def abort(self, code: Any, details: str = "") -> None:
        raise RuntimeError(f"{code}: {details}")


# One call: request bytes in, response bytes out.
Call = Callable[[], Awaitable[bytes]]


def wire_call(handler: Any, payload: bytes, context: DirectCallContext) -> Call:
    """A call through a method handler as grpc.aio makes it: deserialize, await, serialize."""
    deserialize, serialize = handler.request_deserializer, handler.response_serializer
    behavior = handler.unary_unary

    async def call() -> bytes:
        return bytes(serialize(await behavior(deserialize(payload), context)))

    return call


def bare_call(behavior: Any, parse: Callable[[bytes], Any], payload: bytes,
              context: DirectCallContext) -> Call:
    async def call() -> bytes:
        return bytes((await behavior(parse(payload), context)).SerializeToString())

    return call


@dataclass(frozen=True)
class Pairing:
    pairs: int
    modelplane_us: float
    bare_us: float
    ratio: float
    interval: tuple[float, float]


def paired_cpu(loop: asyncio.AbstractEventLoop, ours: Call, bare: Call, pairs: int,
               segment: int) -> Pairing:
    """CPU per call of each, in adjacent segments; the ratio of the totals and its interval."""

    async def run(call: Call) -> float:
        started = time.thread_time_ns()
        for _ in range(segment):
            await call()
        return (time.thread_time_ns() - started) / segment / 1000.0

    mine: list[float] = []
    theirs: list[float] = []
    for pair in range(pairs):
        for which in ("ours", "bare") if pair % 2 == 0 else ("bare", "ours"):
            if which == "ours":
                mine.append(loop.run_until_complete(run(ours)))
            else:
                theirs.append(loop.run_until_complete(run(bare)))
    a, b = np.array(mine), np.array(theirs)
    low, high = interval95(len(a), lambda picks: a[picks].sum(axis=1) / b[picks].sum(axis=1))
    return Pairing(pairs, float(np.median(a)), float(np.median(b)), float(a.sum() / b.sum()),
                   (low, high))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from modelplane.config import Settings
    from modelplane.control.server import ControlPlane
    from modelplane.domain.models import RouteTarget
    from modelplane.registry.embedded_redis import EmbeddedRedis
    from modelplane.serving.replica import ReplicaRuntime
    from modelplane.telemetry.data_plane import DataPlaneTelemetry

    spec = MODELS["tiny"]
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mp-handler-")))
        model_path = write_model("tiny", workdir / "models")
        redis_server = EmbeddedRedis(workdir / "redis").start()
        stack.callback(redis_server.stop)
        settings = Settings(redis_url=redis_server.url, data_dir=workdir, control_port=0,
                            inference_port=0, key_prefix="handler")
        control = ControlPlane(settings, redis_server.url)
        control.start()
        stack.callback(control.stop, 0)
        control.registry.register_version("tiny", "bench", create_model=True,
                                          chunks=[model_path.read_bytes()])
        control.registry.set_route(ENDPOINT, [RouteTarget("tiny", 100, version=1)], 0)
        # What a deployed replica gets from the settings' defaults.
        telemetry = DataPlaneTelemetry(
            [control.address], "handler-cost", "replica",
            metric_export_interval_ms=settings.metric_export_interval_ms,
            trace_sample_ratio=settings.trace_sample_ratio,
            slow_request_threshold_ms=settings.slow_request_threshold_ms,
            record_predictions=settings.prediction_records,
            drift_rows_per_interval=settings.drift_rows_per_interval,
        )
        stack.callback(telemetry.shutdown)
        runtime = ReplicaRuntime(settings, "handler-cost", telemetry=telemetry, reuse_port=False)
        stack.callback(runtime.close)
        _wait_routed(runtime)
        handlers = runtime.method_handlers()

        x = spec.sample_input()
        infer_payload = infer_request(ENDPOINT, {spec.input_name: x}).SerializeToString()
        predict_payload = predict_request({spec.input_name: x}, endpoint=ENDPOINT)
        context = DirectCallContext()
        sess = session(model_path)
        bare_oip, bare_predict = BareOip(sess), BarePredictor(sess, "tiny")
        calls = {
            "ModelInfer": (
                wire_call(handlers[MODEL_INFER], infer_payload, context),
                bare_call(bare_oip.ModelInfer, oip_pb.ModelInferRequest.FromString,
                          infer_payload, context),
            ),
            "Predict": (
                wire_call(handlers[PREDICT], predict_payload.SerializeToString(), context),
                bare_call(bare_predict.Predict, inference_pb2.PredictRequest.FromString,
                          predict_payload.SerializeToString(), context),
            ),
        }
        loop = asyncio.new_event_loop()
        stack.callback(loop.close)
        _check_agreement(loop, calls["ModelInfer"])
        for ours, bare in calls.values():  # warm both paths up
            paired_cpu(loop, ours, bare, 2, max(50, args.segment // 10))
        results = {
            method: paired_cpu(loop, ours, bare, args.pairs, args.segment)
            for method, (ours, bare) in calls.items()
        }
    return {
        "benchmark": "handler_cost",
        "model": "tiny",
        "pairs": args.pairs,
        "segment": args.segment,
        "methods": {
            method: {
                "modelplane_cpu_us_median": round(r.modelplane_us, 2),
                "bare_cpu_us_median": round(r.bare_us, 2),
                "ratio": round(r.ratio, 4),
                "ratio_interval95": [round(r.interval[0], 4), round(r.interval[1], 4)],
            }
            for method, r in results.items()
        },
    }


def _wait_routed(runtime: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while runtime.table.endpoint(ENDPOINT) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the replica did not see endpoint '{ENDPOINT}' in {timeout_s} s")
        time.sleep(0.05)


def _check_agreement(loop: asyncio.AbstractEventLoop, calls: tuple[Call, Call]) -> None:
    """Both ModelInfer answers must carry the same outputs before anything is timed."""
    answers = [
        decode_outputs(oip_pb.ModelInferResponse.FromString(loop.run_until_complete(call())))
        for call in calls
    ]
    if answers[0].keys() != answers[1].keys():
        raise RuntimeError(f"outputs differ: {sorted(answers[0])} vs {sorted(answers[1])}")
    for name, value in answers[0].items():
        np.testing.assert_allclose(value, answers[1][name], rtol=1e-5)


def format_table(report: dict[str, Any]) -> str:
    lines = [
        "| method | modelplane CPU us / request | bare CPU us / request | ratio (95 % interval) |",
        "|---|---|---|---|",
    ]
    for method, r in report["methods"].items():
        low, high = r["ratio_interval95"]
        lines.append(
            f"| {method} | {r['modelplane_cpu_us_median']:.1f} | {r['bare_cpu_us_median']:.1f} "
            f"| {r['ratio']:.3f} ({low:.3f}-{high:.3f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--segment", type=int, default=1000, help="calls per timed segment")
    parser.add_argument("--smoke", action="store_true", help="a few pairs, seconds in all")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.pairs, args.segment = 4, 100
    report = measure(args)
    print(format_table(report))
    print(f"results: {write_report(report, 'handler_cost', args.out)}")


if __name__ == "__main__":
    main()
