"""Replicas killed under load on a real Ray Serve data plane; prints the figures.

Starts a whole local stack (embedded Redis, control plane, Ray, two Serve
replicas sharing the inference port), sends predictions back to back from three
clients and kills one replica actor (its process dies at once, as on SIGKILL)
every ``--interval`` seconds; Serve restarts each killed replica. The clients:

- ``ModelplaneClient(...)``: the Python client as shipped, retrying on UNAVAILABLE;
- ``ModelplaneClient(..., retry_predictions=False)``: the same without retry;
- a stub on a stock ``grpc.insecure_channel``, for reference: what a caller that
  sets none of the client's channel options sees (README, "Client channels").

Every failure is placed after the kill it follows: how many, which status, how long
after the kill and for how long. Exits 1 if the targets are missed: >= 99.9 %
without retry over >= 2,000 predictions, 100 % with retry. Run by ``make chaos``.
"""

from __future__ import annotations

import argparse
import bisect
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import psutil

from modelplane.client import ModelplaneClient, build_predict_request
from modelplane.config import Settings
from modelplane.launcher import LocalStack
from modelplane.sample_models import linear_model
from modelplane.v1 import inference_pb2_grpc

TARGET_WITHOUT_RETRY = 0.999
MIN_REQUESTS = 2000


class Traffic(threading.Thread):
    """Calls ``predict`` back to back; keeps the time, status and message of each failure."""

    def __init__(self, name: str, predict: Callable[[], object], stop: threading.Event) -> None:
        super().__init__(daemon=True, name=name)
        self._predict = predict
        self._halt = stop
        self.ok = 0
        # (monotonic start of the call, its duration, status, message)
        self.failures: list[tuple[float, float, str, str]] = []

    def run(self) -> None:
        while not self._halt.is_set():
            began = time.monotonic()
            try:
                self._predict()
                self.ok += 1
            except grpc.RpcError as err:
                self.failures.append(
                    (began, time.monotonic() - began, err.code().name, err.details() or "")
                )

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    @property
    def rate(self) -> float:
        return self.ok / self.total if self.total else 0.0

    def summary(self) -> str:
        codes = Counter(code for _, _, code, _ in self.failures)
        return f"{self.ok}/{self.total} ok ({100.0 * self.rate:.3f} %), failures {dict(codes)}"

    def by_kill(self, kills: list[float]) -> list[str]:
        """One line per kill that cost failures: count, window after the kill, messages."""
        groups: dict[int, list[tuple[float, float, str, str]]] = {}
        for failure in self.failures:
            # A call that failed because of a kill may have started just before it.
            index = bisect.bisect_right(kills, failure[0] + failure[1]) - 1
            groups.setdefault(index, []).append(failure)
        lines = []
        for index, group in sorted(groups.items()):
            origin = kills[index] if index >= 0 else group[0][0]
            first = group[0][0] - origin
            last = max(start + took for start, took, _, _ in group) - origin
            kinds = Counter(f"{code}: {_shorten(message)}" for _, _, code, message in group)
            label = f"kill {index + 1}" if index >= 0 else "before any kill"
            lines.append(
                f"  {label}: {len(group)} failed, from {first:+.3f} s to {last:+.3f} s "
                f"after it; {dict(kinds)}"
            )
        return lines


def _shorten(message: str) -> str:
    # "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:...: reason"
    head, _, tail = message.partition("; last error: ")
    return f"{head} ({tail.rsplit(': ', 1)[-1]})" if tail else message


def _replica_actors() -> list[str]:
    import ray

    return [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if "SERVE_REPLICA" in a["name"] and "DataPlane" in a["name"]
    ]


def _listeners(port: int) -> int:
    """Sockets listening on ``port``: the replicas in its SO_REUSEPORT group."""
    return sum(
        1
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    )


def _wait_all_running(
    replicas: int, port: int, timeout_s: float = 120.0
) -> tuple[float, float, list[str]]:
    """Until every replica is up again: (seconds waited, seconds Serve called them
    all RUNNING before they were, the live replica actors).

    A kill while one replica is still down would take the whole data plane down,
    which is not this test. Serve's status alone does not tell: it notices a killed
    replica only at its next health check and calls it RUNNING meanwhile, so the
    live named actors and the sockets listening on the port must number
    ``replicas`` too.
    """
    from ray import serve

    from modelplane.serving.app import APP_NAME

    began = time.monotonic()
    serve_said: float | None = None
    while time.monotonic() - began < timeout_s:
        app = serve.status().applications.get(APP_NAME)
        if app is not None:
            states = {
                str(getattr(state, "value", state)): count
                for deployment in app.deployments.values()
                for state, count in deployment.replica_states.items()
            }
            if states == {"RUNNING": replicas}:
                now = time.monotonic()
                serve_said = now if serve_said is None else serve_said
                names = _replica_actors()
                if len(names) == replicas and _listeners(port) == replicas:
                    return now - began, now - serve_said, names
            else:
                serve_said = None
        time.sleep(0.2)
    raise RuntimeError(f"replicas not all RUNNING after {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
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
            control, inference = stack.control_address, stack.inference_address
            port = stack.settings.inference_port
            retrying = ModelplaneClient(control, inference)
            plain = ModelplaneClient(control, inference, retry_predictions=False)
            version = retrying.register("chaos", linear_model())
            print(f"registered chaos v{version.version}: {version.status} {version.status_reason}")
            retrying.set_route("chaos", [("chaos", version.version, 100)])
            inputs = {"x": np.ones((1, 16), np.float32)}
            request = build_predict_request("chaos", inputs)
            stock = grpc.insecure_channel(inference)
            raw = inference_pb2_grpc.InferenceServiceStub(stock)
            stop = threading.Event()
            clients = [
                Traffic("with retry", lambda: retrying.predict("chaos", inputs, timeout_s=5), stop),
                Traffic("without retry", lambda: plain.predict("chaos", inputs, timeout_s=5), stop),
                Traffic("stock channel", lambda: raw.Predict(request, timeout=5), stop),
            ]
            for traffic in clients:
                traffic.start()
            kills: list[float] = []
            began = time.monotonic()
            while time.monotonic() - began < args.seconds:
                time.sleep(args.interval)
                recovered, serve_early, names = _wait_all_running(settings.replicas, port)
                victim = names[len(kills) % len(names)]
                kills.append(time.monotonic())
                ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=False)
                print(
                    f"{kills[-1] - began:6.1f} s  killed {victim} (all replicas were back "
                    f"{recovered:.1f} s after the interval; Serve said so {serve_early:.1f} s "
                    "earlier)",
                    flush=True,
                )
            # The last kill's failures, if any, have happened by the time Serve restarted it.
            _wait_all_running(settings.replicas, port)
            stop.set()
            for traffic in clients:
                traffic.join(10)
            print(f"\n{len(kills)} replica kills in {time.monotonic() - began:.0f} s")
            for traffic in clients:
                print(f"{traffic.name + ':':15} {traffic.summary()}")
                for line in traffic.by_kill(kills):
                    print(line)
            retrying.close()
            plain.close()
            stock.close()
    with_retry, without_retry = clients[0], clients[1]
    met = (
        with_retry.failures == []
        and without_retry.rate >= TARGET_WITHOUT_RETRY
        and without_retry.total >= MIN_REQUESTS
    )
    print(
        f"\ntargets (100 % with retry; >= {100 * TARGET_WITHOUT_RETRY:.1f} % without, over "
        f">= {MIN_REQUESTS} predictions): {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
