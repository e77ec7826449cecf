"""Ray Serve's per-replica background work, one knob at a time, side by side.

One Ray, one Redis, one control plane; the data plane deployed several times as
separate Serve applications, each on its own inference port, that differ only in
the replica processes' environment (Serve reads its constants from the environment
when the replica imports it). The same closed-loop load goes to each in rotating
rounds, so the ratios against ``default`` (``serving.app.REPLICA_ENV`` as shipped)
are measured under the same machine noise.

    python -m loadtests.serve_knobs --seconds 8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtests.loadgen import LoadSpec, Target, run_load
from loadtests.models import MODELS, write_model
from loadtests.plane import wait_served
from loadtests.report_file import write_report
from loadtests.sysproc import CpuMeter, matching
from loadtests.tensors import predict_request

# Serve's replica-side periodic work and the environment variable that paces it.
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    # Cached Serve metrics flushed every 100 ms by default.
    "metrics-10s": {"RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "10000"},
    # Event-loop lag probe (default every 5 s).
    "loop-monitor-60s": {"RAY_SERVE_EVENT_LOOP_MONITORING_INTERVAL_S": "60"},
    # Autoscaling metrics: pushed every 10 s, recorded every look-back * 0.2.
    "autoscaling-quiet": {
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "60",
        "RAY_SERVE_AUTOSCALING_METRIC_RECORD_INTERVAL_FACTOR": "1.0",
    },
}


def run(
    seconds: float, rounds: int, variants: list[str], idle_s: float = 10.0, say: Any = print
) -> dict[str, Any]:
    from ray import serve

    from modelplane.client import ModelplaneClient
    from modelplane.config import Settings
    from modelplane.launcher import LocalStack
    from modelplane.registry.embedded_redis import free_port
    from modelplane.serving import app as serving_app

    x = MODELS["tiny"].sample_input()
    request = predict_request({"x": x}, endpoint="bench")
    payload = request.SerializeToString()
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="mp-knobs-") as tmp:
        work = Path(tmp)
        settings = Settings(data_dir=work / "data", control_port=0, inference_port=0)
        with LocalStack(settings) as stack:
            model = write_model("tiny", work / "models")
            with ModelplaneClient(stack.control_address) as client:
                version = client.register("tiny", model)
                client.set_route("bench", [("tiny", version.version, 100)])
            addresses: dict[str, str] = {}
            apps: dict[str, str] = {}
            for name in variants:
                if name == "default":
                    addresses[name] = stack.inference_address
                    apps[name] = serving_app.APP_NAME
                    continue
                own = stack.settings.model_copy(update={"inference_port": free_port()})
                deployment: Any = serving_app.DataPlane
                application = deployment.options(
                    name="DataPlane",
                    num_replicas=1,
                    ray_actor_options={
                        "num_cpus": own.replica_num_cpus,
                        "runtime_env": {"env_vars": {**serving_app.REPLICA_ENV, **VARIANTS[name]}},
                    },
                ).bind(own.model_dump_json())
                serve.run(application, name=f"knob-{name}", route_prefix=None, blocking=False)
                addresses[name] = own.inference_address
                apps[name] = f"knob-{name}"
            for name, address in addresses.items():
                wait_served(address, request, lambda r: len(r.outputs) > 0, timeout_s=180)
                say(f"{name} serving on {address}")
            me = os.getpid()
            replicas = {n: matching(me, f"ServeReplica:{apps[n]}:") for n in variants}
            # Idle: what Serve's background work alone costs each replica, per second.
            meters = {n: CpuMeter(replicas[n]).start() for n in variants}
            time.sleep(idle_s)
            idle = {n: round(m.stop() / idle_s * 100, 2) for n, m in meters.items()}
            say(f"idle replica CPU %: {idle}")
            spec = LoadSpec(mode="closed", concurrency=16, duration_s=seconds, warmup_s=2.0)
            for r in range(rounds):
                shift = r % len(variants)
                for name in variants[shift:] + variants[:shift]:
                    meter = CpuMeter(replicas[name]).start()
                    result = run_load(Target(addresses[name], payload), spec)
                    result["replica_cpu_s_per_1k"] = round(
                        meter.stop() / max(result["requests"], 1) * 1000, 4
                    )
                    runs[name].append(result)
                    say(
                        f"r{r + 1} {name:<18} {result['throughput_rps']:8.0f}/s  "
                        f"p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                        f"replica cpu/1k {result['replica_cpu_s_per_1k']} s"
                    )
            for name in variants:
                if name != "default":
                    serve.delete(f"knob-{name}", _blocking=True)
    summary = {
        name: {
            "throughput_rps": statistics.median(r["throughput_rps"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "replica_cpu_s_per_1k": statistics.median(r["replica_cpu_s_per_1k"] for r in rs),
            "idle_replica_cpu_pct": idle[name],
        }
        for name, rs in runs.items()
    }
    base = summary["default"]["throughput_rps"]
    for s in summary.values():
        s["throughput_vs_default"] = round(s["throughput_rps"] / base, 3) if base else None
    return {"variants": {v: VARIANTS[v] for v in variants}, "summary": summary, "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if variants[0] != "default" or any(v not in VARIANTS for v in variants):
        parser.error(f"--variants: 'default' first, then any of {sorted(VARIANTS)}")
    report = run(args.seconds, args.rounds, variants)
    print(json.dumps(report["summary"], indent=2))
    out = write_report(report, "serve_knobs")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
