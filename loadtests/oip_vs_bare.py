"""Open Inference Protocol ModelInfer through modelplane's routing vs a bare grpc.aio server.

Both answer ``inference.GRPCInferenceService/ModelInfer`` on the same ONNX file
with the same raw-contents request, from the same closed-loop client; modelplane
runs whole (launcher: Redis, control plane, Ray Serve replicas) and the request
names an endpoint, so it is routed. modelplane's own Predict on the same stack is
measured too, to show what the protocol costs next to the native one. Target:
modelplane's ModelInfer throughput >= 0.8x the bare server's, measured side by side.

    python -m loadtests.oip_vs_bare --seconds 10 [--rounds 3]
    python -m loadtests.oip_vs_bare --replica-process   # the replica without Ray
    python -m loadtests.oip_vs_bare --smoke
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import numpy as np

if not __package__:
    # Run as a file path (python loadtests/oip_vs_bare.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.models import MODELS, write_model
from loadtests.predict_vs_bare import (
    ENDPOINT,
    _environment,
    _median_summary,
    _start_modelplane,
    format_table,
    ratios,
)
from loadtests.procs import ServerProcess
from loadtests.report_file import write_report
from loadtests.tensors import predict_request
from modelplane.codec.oip import decode_outputs, encode_input
from modelplane.oip import grpc_service_pb2 as pb

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
BASELINE = "bare-oip"
SYSTEM = "modelplane-oip"
UVLOOP_REFERENCE = "bare-oip-uvloop"
TARGET_RATIO = 0.8


def infer_request(name: str, inputs: dict[str, np.ndarray]) -> pb.ModelInferRequest:
    """The request the official clients send: raw contents, every output."""
    request = pb.ModelInferRequest(model_name=name, id="bench")
    for input_name, array in inputs.items():
        encode_input(input_name, array, request)
    return request


def wait_answer(address: str, payload: bytes, timeout_s: float) -> dict[str, np.ndarray]:
    """ModelInfer until the system answers (replicas may still be loading)."""
    deadline = time.monotonic() + timeout_s
    last: grpc.RpcError | None = None
    with grpc.insecure_channel(address) as channel:
        call: Any = channel.unary_unary(MODEL_INFER)
        while time.monotonic() < deadline:
            try:
                raw = call(payload, timeout=10)
                return decode_outputs(pb.ModelInferResponse.FromString(raw))
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.FAILED_PRECONDITION,
                ):
                    raise
                last = exc
                time.sleep(0.2)
    raise TimeoutError(f"{address} gave no ModelInfer answer within {timeout_s}s: {last}")


def _start_replica_process(stack: ExitStack, workdir: Path, model_path: Path, name: str) -> str:
    """modelplane without Ray: embedded Redis, the registry, one replica process.

    The request path is the same as under Ray Serve (each Serve replica runs this
    very ``ReplicaRuntime`` and its own gRPC server); what this skips is Ray's
    start-up, which on a loaded 2-core machine can time out.
    """
    from modelplane.config import Settings
    from modelplane.domain.models import RouteTarget
    from modelplane.registry.artifacts import ArtifactStore
    from modelplane.registry.embedded_redis import EmbeddedRedis
    from modelplane.registry.redis_store import RedisRegistryStore
    from modelplane.registry.use_cases import Registry

    redis_server = stack.enter_context(EmbeddedRedis(workdir / "redis"))
    settings = Settings(redis_url=redis_server.url, data_dir=workdir / "data", key_prefix="bench")
    store = RedisRegistryStore.from_url(redis_server.url, "bench")
    registry = Registry(store, ArtifactStore(settings.resolved_artifact_root))
    model = f"bench-{name}"
    version = registry.register_version(
        model, "", create_model=True, chunks=[model_path.read_bytes()]
    )
    registry.set_route(ENDPOINT, [RouteTarget(model, 100, version=version.version)], 0)
    env = {
        "MODELPLANE_REDIS_URL": redis_server.url,
        "MODELPLANE_DATA_DIR": str(workdir / "data"),
        "MODELPLANE_KEY_PREFIX": "bench",
    }
    replica = stack.enter_context(
        ServerProcess(
            "loadtests.replica_server", ["--id", "oip-bench"], env=env, startup_timeout=60
        )
    )
    return replica.address


def run(args: argparse.Namespace, say: Callable[[str], None] = print) -> dict[str, Any]:
    bench_model = MODELS[args.model]
    x = bench_model.sample_input(batch=args.batch)
    oip_payload = infer_request(ENDPOINT, {bench_model.input_name: x}).SerializeToString()
    spec = LoadSpec(
        mode="closed",
        concurrency=args.concurrency,
        duration_s=args.seconds,
        warmup_s=args.warmup,
        processes=args.processes,
    )
    environment = _environment()
    targets: dict[str, Target] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mp-oip-bench-")))
        model_path = write_model(args.model, workdir / "models")
        say("starting bare-oip (grpc.aio + onnxruntime, ModelInfer only)")
        bare = stack.enter_context(
            ServerProcess("loadtests.bare_oip_server", ["--model", str(model_path)])
        )
        targets[BASELINE] = Target(bare.address, oip_payload, method=MODEL_INFER)
        if not args.skip_uvloop_reference:
            # The replica runs on uvloop (Ray's loop for async actors): the same
            # bare server on it shows what the loop alone is worth.
            say("starting bare-oip on uvloop")
            bare_uvloop = stack.enter_context(
                ServerProcess(
                    "loadtests.bare_oip_server", ["--model", str(model_path), "--loop", "uvloop"]
                )
            )
            targets[UVLOOP_REFERENCE] = Target(
                bare_uvloop.address, oip_payload, method=MODEL_INFER
            )
        began = time.monotonic()
        if args.replica_process:
            say("starting modelplane (embedded Redis, registry, one replica process, no Ray)")
            address = _start_replica_process(stack, workdir, model_path, args.model)
        else:
            say("starting modelplane (LocalStack: Redis, control plane, Ray, data plane)")
            address = _start_modelplane(stack, workdir, model_path, args.model)
        say(f"  modelplane routed in {time.monotonic() - began:.1f}s")
        targets[SYSTEM] = Target(address, oip_payload, method=MODEL_INFER)
        if not args.skip_predict:
            predict = predict_request({bench_model.input_name: x}, endpoint=ENDPOINT)
            targets["modelplane-predict"] = Target(address, predict.SerializeToString())

        # Same input, same answer, or the comparison is meaningless.
        reference = wait_answer(bare.address, oip_payload, 30.0)
        answer = wait_answer(address, oip_payload, 120.0)
        for name, array in reference.items():
            if not np.allclose(answer[name], array, rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"modelplane answered {name} differently from {BASELINE}")

        names = list(targets)
        for round_index in range(args.rounds):
            # Rotate so no system always runs first (cold) or last (after the others).
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                say(
                    f"round {round_index + 1}/{args.rounds}: {name} for {args.seconds}s "
                    f"(+{args.warmup}s warm-up), {args.concurrency} in flight"
                )
                result = run_load(targets[name], spec)
                runs.setdefault(name, []).append(result)
                say(
                    f"  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                    f"{result['throughput_rps']} req/s  errors {result['errors']}"
                )

    summary = {name: _median_summary(runs[name]) for name in names}
    ratio_rows = {
        f"{name} / {BASELINE}": ratios(summary, name, BASELINE)
        for name in names
        if name != BASELINE
    }
    if UVLOOP_REFERENCE in summary:
        ratio_rows[f"{SYSTEM} / {UVLOOP_REFERENCE}"] = ratios(summary, SYSTEM, UVLOOP_REFERENCE)
    throughput_ratio = ratio_rows[f"{SYSTEM} / {BASELINE}"]["throughput_rps"]
    environment["loadavg_after"] = os.getloadavg()
    report = {
        "benchmark": "oip_vs_bare",
        "model": args.model,
        "batch": args.batch,
        "modelplane": "replica process" if args.replica_process else "LocalStack (Ray Serve)",
        "load": {
            "mode": spec.mode,
            "concurrency": spec.concurrency,
            "seconds": spec.duration_s,
            "warmup_s": spec.warmup_s,
            "processes": spec.processes,
            "rounds": args.rounds,
        },
        "environment": environment,
        "summary": summary,
        "ratios": ratio_rows,
        "target": {"throughput_ratio": TARGET_RATIO, "measured": throughput_ratio},
        "runs": runs,
    }
    say("")
    say(format_table(summary, ratio_rows))
    met = throughput_ratio is not None and throughput_ratio >= TARGET_RATIO
    say(f"target: {SYSTEM} throughput >= {TARGET_RATIO}x {BASELINE}: {'met' if met else 'NOT met'}")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the sequence")
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--batch", type=int, default=1, help="rows per request")
    parser.add_argument(
        "--skip-predict", action="store_true", help="do not measure modelplane's own Predict"
    )
    parser.add_argument(
        "--skip-uvloop-reference",
        action="store_true",
        help="do not also measure the bare server on uvloop (the replicas' loop under Ray)",
    )
    parser.add_argument(
        "--replica-process",
        action="store_true",
        help="run modelplane's replica as a plain process (no Ray): same request path",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a couple of seconds per system: checks the harness"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.warmup, args.rounds = 2.0, 0.5, 1
    if args.seconds <= 0 or args.warmup < 0 or args.rounds < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    kind = "smoke" if args.smoke else args.model
    out = write_report(report, f"oip_vs_bare-{kind}", args.out)
    print(f"\nwrote {out}")
    errors = sum(s["errors"] for s in report["summary"].values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
