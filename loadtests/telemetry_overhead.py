"""What telemetry costs a replica: the same replica code with telemetry on and off, one run.

Starts an embedded Redis and a control plane (the OTLP receiver) in this process,
registers the 16->4 demo model, then two replica processes running the very code a
Ray Serve replica runs (``ReplicaRuntime``): one with ``DataPlaneTelemetry`` at the
default settings (export to the control plane, head sampling at the default
``trace_sample_ratio``, slow/error spans kept, prediction records and drift
samples shipped), one without. The same closed-loop load hits each in turn,
``--rounds`` times with the order rotated; the median throughput ratio is the cost.

    python -m loadtests.telemetry_overhead --seconds 10 --rounds 3
    python -m loadtests.telemetry_overhead --serve on|off ...   # (internal: one replica)
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import psutil

from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.procs import ServerProcess
from loadtests.report_file import write_report

ENDPOINT = "bench"


def serve(args: argparse.Namespace) -> None:
    """One replica process: telemetry on or off, serving until SIGTERM."""
    from modelplane.config import Settings
    from modelplane.serving.replica import ReplicaRuntime
    from modelplane.telemetry.data_plane import DataPlaneTelemetry

    settings = Settings(
        redis_url=args.redis, key_prefix=args.prefix, data_dir=Path(args.data_dir),
        inference_port=0,
    )
    telemetry = None
    if args.serve in ("on", "lean"):
        lean = args.serve == "lean"
        telemetry = DataPlaneTelemetry(
            [args.control], "bench-replica", f"replica-{args.serve}",
            metric_export_interval_ms=settings.metric_export_interval_ms,
            trace_sample_ratio=settings.trace_sample_ratio,
            slow_request_threshold_ms=settings.slow_request_threshold_ms,
            # "on" is what a deployed replica gets from the settings' defaults.
            record_predictions=False if lean else settings.prediction_records,
            drift_rows_per_interval=0 if lean else settings.drift_rows_per_interval,
        )
    runtime = ReplicaRuntime(settings, f"replica-{args.serve}", telemetry=telemetry,
                             reuse_port=False)
    print(f"PORT {runtime.address.rsplit(':', 1)[1]}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    runtime.close()
    if telemetry is not None:
        print(f"dropped_spans {telemetry.dropped_spans} "
              f"dropped_predictions {telemetry.dropped_predictions}", flush=True)
        telemetry.shutdown()


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from modelplane.config import Settings
    from modelplane.control.server import ControlPlane
    from modelplane.domain.models import RouteTarget
    from modelplane.registry.embedded_redis import EmbeddedRedis
    from modelplane.sample_models import linear_model

    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mp-tel-")))
        redis_server = EmbeddedRedis(workdir / "redis").start()
        stack.callback(redis_server.stop)
        settings = Settings(redis_url=redis_server.url, data_dir=workdir, control_port=0,
                            key_prefix="bench")
        control = ControlPlane(settings, redis_server.url)
        control.start()
        stack.callback(control.stop, 0)
        control.registry.register_version("m", "bench", create_model=True,
                                          chunks=[linear_model()])
        control.registry.set_route(ENDPOINT, [RouteTarget("m", 100, version=1)], 0)
        servers = {}
        for mode in args.modes.split(","):
            if mode == "bare":
                # The same model behind a bare grpc.aio + onnxruntime server: the
                # yardstick for what the replica's whole path costs.
                model_file = workdir / "bench.onnx"
                model_file.write_bytes(linear_model())
                servers["bare"] = stack.enter_context(
                    ServerProcess("loadtests.bare_server", ["--model", str(model_file)])
                )
                continue
            server = ServerProcess(
                "loadtests.telemetry_overhead",
                ["--serve", mode, "--redis", redis_server.url, "--prefix", "bench",
                 "--control", control.address, "--data-dir", str(workdir)],
            )
            stack.enter_context(server)
            servers[f"telemetry-{mode}"] = server
        x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
        spec = LoadSpec(mode="closed", concurrency=args.concurrency, duration_s=args.seconds,
                        warmup_s=2.0, processes=args.processes)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        names = list(servers)
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            order = names[shift:] + names[:shift]
            for name in order:
                target = Target.predict(servers[name].address, {"x": x}, endpoint=ENDPOINT)
                replica = psutil.Process(servers[name].pid)
                here = psutil.Process()
                cpu_before, control_before = replica.cpu_times(), here.cpu_times()
                result = run_load(target, spec)
                cpu_after, control_after = replica.cpu_times(), here.cpu_times()
                served = result["requests"]
                # CPU the replica spent per request: robust to other load on the machine
                # in a way throughput is not. Warm-up requests included on both sides.
                total = served * (spec.duration_s + spec.warmup_s) / spec.duration_s
                result["replica_cpu_us_per_request"] = (
                    (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system)
                    / total * 1e6
                )
                result["control_plane_cpu_us_per_request"] = (
                    (control_after.user + control_after.system
                     - control_before.user - control_before.system) / total * 1e6
                )
                runs[name].append(result)
                print(f"round {round_index + 1} {name}: "
                      f"{result['throughput_rps']:.0f} req/s p50 {result['p50_ms']:.3f} ms "
                      f"p99 {result['p99_ms']:.3f} ms errors {result['errors']} "
                      f"replica CPU {result['replica_cpu_us_per_request']:.1f} us/req "
                      f"control plane CPU {result['control_plane_cpu_us_per_request']:.1f} "
                      f"us/req", flush=True)
        stats = control.aggregator.query(ENDPOINT, 3600)
        received = sum(r.window_request_count for r in stats)

    def med(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs[name]))

    summary = {
        name: {
            key: med(name, key)
            for key in ("throughput_rps", "p50_ms", "p99_ms", "replica_cpu_us_per_request",
                        "control_plane_cpu_us_per_request")
        }
        for name in runs
    }
    off = summary.get("telemetry-off") or next(iter(summary.values()))
    result = {
        "summary": summary,
        "throughput_vs_bare": (
            {name: round(s["throughput_rps"] / summary["bare"]["throughput_rps"], 4)
             for name, s in summary.items()}
            if "bare" in summary else {}
        ),
        "throughput_vs_off": {
            name: round(s["throughput_rps"] / off["throughput_rps"], 4)
            for name, s in summary.items()
        },
        "replica_cpu_per_request_vs_off": {
            name: round(s["replica_cpu_us_per_request"] / off["replica_cpu_us_per_request"], 4)
            for name, s in summary.items()
        },
        "p50_vs_off": {
            name: round(s["p50_ms"] / off["p50_ms"], 4) for name, s in summary.items()
        },
        "requests_aggregated_by_control_plane": received,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "concurrency": args.concurrency,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", choices=("on", "off", "lean"))
    parser.add_argument("--modes", default="on,off",
                        help="replicas to compare: on (defaults), off, lean (no prediction "
                             "records or drift samples), bare (a bare grpc.aio server)")
    parser.add_argument("--redis")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--control")
    parser.add_argument("--data-dir")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args)
        return
    result = bench(args)
    print(json.dumps(result, indent=2))
    out = write_report(result, "telemetry_overhead")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
