"""modelplane's Predict path against a bare grpc.aio + onnxruntime server, in one run.

Starts every system on the same ONNX file (the bare server, modelplane through its
launcher, optionally Ray Serve's stock gRPC proxy), checks they give the same answer,
then puts the same closed-loop load on each in turn, with the same client. Shared
machines are noisy, so only ratios measured side by side mean anything; ``--rounds``
repeats the sequence (rotating the order) and reports the median per system.

    python -m loadtests.predict_vs_bare --seconds 10 [--with-serve-proxy]
    python -m loadtests.predict_vs_bare --smoke          # a couple of seconds each

Writes the full results (histograms included) to ``loadtests/results/``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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
    # Run as a file path (python loadtests/predict_vs_bare.py): make the package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.models import MODELS, write_model
from loadtests.procs import ServerProcess
from loadtests.report_file import write_report
from loadtests.tensors import predict_request, to_array
from modelplane.v1 import inference_pb2, inference_pb2_grpc

ENDPOINT = "bench"
BASELINE = "bare"
UVLOOP_REFERENCE = "bare-uvloop"


def _start_modelplane(stack: ExitStack, workdir: Path, model_path: Path, name: str) -> str:
    """Start modelplane with the launcher, register the model, route ``ENDPOINT`` to it.

    Returns the inference address once a prediction has gone through.
    """
    from modelplane.client import ModelplaneClient
    from modelplane.config import Settings
    from modelplane.launcher import LocalStack

    settings = Settings(
        data_dir=workdir / "modelplane",
        control_port=0,
        inference_port=0,
        key_prefix="bench",
    )
    running = stack.enter_context(LocalStack(settings))
    client = stack.enter_context(
        ModelplaneClient(running.control_address, running.inference_address)
    )
    version = client.register(f"bench-{name}", model_path, create_model=True)
    client.set_route(ENDPOINT, [(f"bench-{name}", version.version, 100)])
    return running.inference_address


def _wait_answer(
    address: str, request: inference_pb2.PredictRequest, timeout_s: float
) -> np.ndarray:
    """Predict until the system answers (replicas may still be loading); return ``y``."""
    deadline = time.monotonic() + timeout_s
    last: grpc.RpcError | None = None
    with grpc.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        while time.monotonic() < deadline:
            try:
                response = stub.Predict(request, timeout=10)
                return np.array(to_array(response.outputs[0]))
            except grpc.RpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.FAILED_PRECONDITION,
                ):
                    raise
                last = exc
                time.sleep(0.2)
    raise TimeoutError(f"{address} gave no answer within {timeout_s}s: {last}")


def _median_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(values), 4) if values else None

    return {
        "rounds": len(runs),
        "p50_ms": med("p50_ms"),
        "p90_ms": med("p90_ms"),
        "p99_ms": med("p99_ms"),
        "p999_ms": med("p999_ms"),
        "throughput_rps": med("throughput_rps"),
        "errors": sum(r["errors"] for r in runs),
    }


def ratios(
    summary: dict[str, dict[str, Any]], system: str, baseline: str
) -> dict[str, float | None]:
    """``system / baseline`` for latency and throughput (latency > 1 and throughput < 1
    mean ``system`` is slower)."""
    out: dict[str, float | None] = {}
    for key in ("p50_ms", "p99_ms", "throughput_rps"):
        a, b = summary[system].get(key), summary[baseline].get(key)
        out[key] = round(a / b, 3) if a is not None and b else None
    return out


def format_table(summary: dict[str, dict[str, Any]], ratio_rows: dict[str, dict[str, Any]]) -> str:
    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = ("system", "p50 ms", "p99 ms", "p99.9 ms", "req/s", "errors")
    lines = [f"{header[0]:<14}" + "".join(f"{h:>10}" for h in header[1:])]
    for name, s in summary.items():
        cells = [cell(s.get(k), ".3f") for k in ("p50_ms", "p99_ms", "p999_ms")]
        cells += [cell(s.get("throughput_rps"), ".0f"), str(s["errors"])]
        lines.append(f"{name:<14}" + "".join(f"{c:>10}" for c in cells))
    for label, r in ratio_rows.items():
        p50, p99 = cell(r.get("p50_ms"), ".2f"), cell(r.get("p99_ms"), ".2f")
        lines.append(
            f"{label}: p50 x{p50}  p99 x{p99}  throughput x{cell(r.get('throughput_rps'), '.2f')}"
        )
    return "\n".join(lines)


def _environment() -> dict[str, Any]:
    import onnxruntime
    import ray

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "onnxruntime": onnxruntime.__version__,
        "ray": ray.__version__,
        "loadavg_before": os.getloadavg(),
    }


def run(args: argparse.Namespace, say: Callable[[str], None] = print) -> dict[str, Any]:
    bench_model = MODELS[args.model]
    x = bench_model.sample_input(batch=args.batch)
    request = predict_request({bench_model.input_name: x}, endpoint=ENDPOINT)
    spec = LoadSpec(
        mode="closed",
        concurrency=args.concurrency,
        duration_s=args.seconds,
        warmup_s=args.warmup,
        processes=args.processes,
    )
    environment = _environment()
    addresses: dict[str, str] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mp-bench-")))
        model_path = write_model(args.model, workdir / "models")

        say(f"starting {BASELINE} (grpc.aio + onnxruntime)")
        bare = stack.enter_context(
            ServerProcess("loadtests.bare_server", ["--model", str(model_path)])
        )
        addresses[BASELINE] = bare.address
        if not args.skip_uvloop_reference:
            # The replica runs on uvloop (Ray's loop for async actors): the same
            # bare server on it shows what the loop alone is worth.
            say(f"starting {UVLOOP_REFERENCE}")
            bare_uvloop = stack.enter_context(
                ServerProcess(
                    "loadtests.bare_server", ["--model", str(model_path), "--loop", "uvloop"]
                )
            )
            addresses[UVLOOP_REFERENCE] = bare_uvloop.address
        if not args.skip_modelplane:
            say("starting modelplane (LocalStack: Redis, control plane, Ray, data plane)")
            began = time.monotonic()
            addresses["modelplane"] = _start_modelplane(stack, workdir, model_path, args.model)
            say(f"  modelplane routed in {time.monotonic() - began:.1f}s")
        if args.with_serve_proxy:
            say("starting Ray Serve stock gRPC proxy (own Ray, num_cpus=2)")
            serve = stack.enter_context(
                ServerProcess(
                    "loadtests.ray_serve_proxy",
                    ["--model", str(model_path)],
                    startup_timeout=240.0,
                    stop_timeout=90.0,
                )
            )
            addresses["serve-proxy"] = serve.address

        # Same input, same answer everywhere, or the comparison is meaningless.
        reference = _wait_answer(addresses[BASELINE], request, 30.0)
        for name, address in addresses.items():
            answer = _wait_answer(address, request, 120.0)
            if not np.allclose(answer, reference, rtol=1e-4, atol=1e-5):
                raise RuntimeError(f"{name} answered differently from {BASELINE}")

        names = list(addresses)
        payload = request.SerializeToString()
        for round_index in range(args.rounds):
            # Rotate so no system always runs first (cold) or last (after the others).
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                say(
                    f"round {round_index + 1}/{args.rounds}: {name} for {args.seconds}s "
                    f"(+{args.warmup}s warm-up), {args.concurrency} in flight"
                )
                result = run_load(Target(addresses[name], payload), spec)
                runs.setdefault(name, []).append(result)
                say(
                    f"  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                    f"{result['throughput_rps']} req/s  errors {result['errors']}"
                )

    summary = {name: _median_summary(runs[name]) for name in names}
    ratio_rows: dict[str, dict[str, Any]] = {}
    for name in names:
        if name != BASELINE:
            ratio_rows[f"{name} / {BASELINE}"] = ratios(summary, name, BASELINE)
    if "modelplane" in summary and UVLOOP_REFERENCE in summary:
        ratio_rows[f"modelplane / {UVLOOP_REFERENCE}"] = ratios(
            summary, "modelplane", UVLOOP_REFERENCE
        )
    if "modelplane" in summary and "serve-proxy" in summary:
        ratio_rows["modelplane / serve-proxy"] = ratios(summary, "modelplane", "serve-proxy")
    environment["loadavg_after"] = os.getloadavg()
    report = {
        "benchmark": "predict_vs_bare",
        "model": args.model,
        "batch": args.batch,
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
        "runs": runs,
    }
    say("")
    say(format_table(summary, ratio_rows))
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
        "--with-serve-proxy", action="store_true", help="also measure Ray Serve's stock gRPC proxy"
    )
    parser.add_argument(
        "--skip-modelplane", action="store_true", help="compare the reference servers only"
    )
    parser.add_argument(
        "--skip-uvloop-reference",
        action="store_true",
        help="do not also measure the bare server on uvloop (the replicas' loop under Ray)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a couple of seconds per system: checks the harness, not speed",
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
    out = write_report(report, f"predict_vs_bare-{kind}", args.out)
    print(f"\nwrote {out}")
    errors = sum(s["errors"] for s in report["summary"].values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
