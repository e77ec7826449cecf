"""The same model behind Ray Serve's stock gRPC proxy, for comparison.

Starts its own local Ray (``num_cpus`` explicit, dashboard off) inside this process,
registers modelplane.v1 InferenceService with Serve's gRPC proxy and deploys one
deployment whose ``Predict`` method runs the model exactly as ``bare_server`` does.
Prints ``PORT <n>`` (the proxy's gRPC port) once a request has gone through, then waits
for SIGTERM/SIGINT (or ``--max-seconds``) and shuts Serve and Ray down itself.

    python -m loadtests.ray_serve_proxy --model model.onnx [--port 0]

Nothing else is tuned: no direct ingress, no throughput-optimised mode. The proxy
binds all interfaces (Serve's own choice); clients here only ever use 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

SERVICER_FUNCTION = "modelplane.v1.inference_pb2_grpc.add_InferenceServiceServicer_to_server"
APP_NAME = "bench"
# Settings that would switch Serve off its stock proxy path; cleared so the comparison
# measures the default whatever the caller's environment says.
_NON_STOCK_ENV = (
    "RAY_SERVE_ENABLE_DIRECT_INGRESS",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED",
    "RAY_SERVE_ENABLE_HA_PROXY",
    "RAY_ADDRESS",
)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now; Serve takes a fixed port number, not 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class OrtDeployment:
    """A Serve deployment answering ``Predict``: the proxy calls the method named like
    the gRPC method with the decoded request message."""

    def __init__(self, model_path: str, model_name: str) -> None:
        from loadtests.bare_server import BarePredictor
        from loadtests.ort import session

        self._predictor = BarePredictor(session(Path(model_path)), model_name)

    async def Predict(self, request: Any) -> Any:
        return self._predictor.predict(request)


def _warm_up(port: int, model: Path, timeout_s: float) -> None:
    """Send one real request through the proxy, so ``PORT`` means ready to serve."""
    import grpc
    import numpy as np

    from loadtests.ort import session
    from loadtests.tensors import predict_request
    from modelplane.v1 import inference_pb2_grpc

    first = session(model).get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in first.shape]
    request = predict_request({first.name: np.zeros(shape, np.float32)}, endpoint=APP_NAME)
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        while time.monotonic() < deadline:
            try:
                stub.Predict(request, timeout=5)
                return
            except grpc.RpcError as exc:
                # Until the proxy has the route it answers UNAVAILABLE / NOT_FOUND.
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                    raise
                last = exc
                time.sleep(0.2)
    raise TimeoutError(f"Serve gRPC proxy on port {port} not ready: {last}")


def run(args: argparse.Namespace) -> None:
    import ray
    from ray import serve

    port = args.port or free_port()
    http_port = free_port()
    ray.init(
        address="local",  # always a fresh cluster of our own, never someone else's
        num_cpus=args.num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    stop = threading.Event()
    # Installed after ray.init so this handler, not Ray's, decides how we exit.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(
            http_options={"host": "127.0.0.1", "port": http_port},
            grpc_options={"port": port, "grpc_servicer_functions": [SERVICER_FUNCTION]},
        )
        options: dict[str, Any] = {
            "num_replicas": args.replicas,
            "ray_actor_options": {"num_cpus": args.replica_num_cpus},
        }
        if args.max_ongoing_requests:
            options["max_ongoing_requests"] = args.max_ongoing_requests
        deployment = serve.deployment(**options)(OrtDeployment)
        serve.run(
            deployment.bind(str(args.model.resolve()), args.name),
            name=APP_NAME,
            # The proxy only exposes applications that have a route prefix; with a
            # single one it needs no "application" metadata from the client.
            route_prefix="/",
        )
        _warm_up(port, args.model, timeout_s=60.0)
        print(f"PORT {port}", flush=True)
        if not stop.wait(timeout=args.max_seconds):
            print("max-seconds reached, stopping", file=sys.stderr, flush=True)
    finally:
        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        finally:
            ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve one ONNX model via Ray Serve's gRPC proxy.")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--name", default="serve", help="model name reported in responses")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the private Ray")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--replica-num-cpus", type=float, default=0.5)
    parser.add_argument(
        "--max-ongoing-requests",
        type=int,
        default=32,
        help="per replica; above the load's concurrency so the proxy path is what is "
        "measured, not the replica's admission queue (0 keeps Serve's default)",
    )
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    for name in _NON_STOCK_ENV:
        os.environ.pop(name, None)
    run(args)


if __name__ == "__main__":
    main()
