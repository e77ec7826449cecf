"""Replicas killed under load on a real Ray Serve data plane; prints the figures.

Starts a whole local stack (embedded Redis, control plane, Ray, two Serve
replicas sharing the inference port), sends predictions back to back from two
clients — one retrying on UNAVAILABLE (the Python client's default), one not —
and kills one replica actor every ``--interval`` seconds. Serve restarts each
killed replica. Run by ``make chaos``.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

from modelplane.client import ModelplaneClient, build_predict_request
from modelplane.config import Settings
from modelplane.launcher import LocalStack
from modelplane.sample_models import linear_model
from modelplane.v1 import inference_pb2_grpc


class Traffic(threading.Thread):
    def __init__(self, predict: object, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self._predict = predict
        self._halt = stop
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def run(self) -> None:
        request = build_predict_request("chaos", {"x": np.ones((1, 16), np.float32)})
        while not self._halt.is_set():
            try:
                self._predict(request, timeout=5)  # type: ignore[operator]
                self.ok += 1
            except grpc.RpcError as err:
                self.failures[err.code().name] += 1
                self.examples.setdefault(err.code().name, err.details() or "")

    def summary(self) -> str:
        total = self.ok + sum(self.failures.values())
        rate = 100.0 * self.ok / total if total else 0.0
        return (
            f"{self.ok}/{total} ok ({rate:.3f} %), failures {dict(self.failures)} "
            f"e.g. {self.examples}"
        )


def _replica_actors() -> list[str]:
    import ray

    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "SERVE_REPLICA" in a["name"] and "DataPlane" in a["name"]
    ]


def _wait_all_running(replicas: int, timeout_s: float = 120.0) -> float:
    """Until Serve reports every replica RUNNING again (a kill while one is still
    restarting would take the whole data plane down, which is not this test)."""
    from ray import serve

    from modelplane.serving.app import APP_NAME

    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        app = serve.status().applications.get(APP_NAME)
        if app is not None:
            states = {
                str(getattr(state, "value", state)): count
                for deployment in app.deployments.values()
                for state, count in deployment.replica_states.items()
            }
            if states == {"RUNNING": replicas}:
                return time.monotonic() - began
        time.sleep(0.2)
    raise RuntimeError(f"replicas not all RUNNING after {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=10.0)
    args = parser.parse_args()

    import ray

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            data_dir=Path(folder), control_port=0, inference_port=0, replicas=2,
            telemetry_enabled=False,
        )
        with LocalStack(settings) as stack:
            client = ModelplaneClient(stack.control_address, stack.inference_address)
            version = client.register("chaos", linear_model())
            print(f"registered chaos v{version.version}: {version.status} {version.status_reason}")
            client.set_route("chaos", [("chaos", version.version, 100)])
            assert client.inference is not None
            raw = inference_pb2_grpc.InferenceServiceStub(
                grpc.insecure_channel(stack.inference_address)
            )
            stop = threading.Event()
            retrying, plain = Traffic(client.inference.Predict, stop), Traffic(raw.Predict, stop)
            retrying.start()
            plain.start()
            kills = 0
            began = time.monotonic()
            while time.monotonic() - began < args.seconds:
                time.sleep(args.interval)
                recovered = _wait_all_running(settings.replicas)
                names = _replica_actors()
                if names:
                    victim = names[kills % len(names)]
                    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=False)
                    kills += 1
                    print(
                        f"{time.monotonic() - began:6.1f} s  killed {victim} "
                        f"(all replicas were back {recovered:.1f} s after the interval)",
                        flush=True,
                    )
            stop.set()
            retrying.join(10)
            plain.join(10)
            print(f"\n{kills} replica kills in {args.seconds:.0f} s")
            print(f"with retry on UNAVAILABLE:    {retrying.summary()}")
            print(f"without retry:                {plain.summary()}")
            client.close()


if __name__ == "__main__":
    main()
