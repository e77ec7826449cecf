"""``modelplane up`` as a real child process, timed to its first prediction.

The benchmark's modelplane is exactly what a user starts: the CLI, default settings
(routing, validation, telemetry on), embedded Redis, a local Ray and the Serve data
plane, all descendants of one process whose tree is what CPU and memory are read from.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import grpc
import numpy as np

from loadtests.sysproc import process_tree
from loadtests.tensors import predict_request
from modelplane.cli.auth import read_local_token
from modelplane.client import ModelplaneClient
from modelplane.v1 import inference_pb2_grpc

_ADDRESS = re.compile(r"^(control plane|inference)\s+(\S+)", re.MULTILINE)
_RETRY = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
)


class UpProcess:
    def __init__(
        self, data_dir: Path, *, replicas: int = 1, startup_timeout: float = 180.0
    ) -> None:
        self.data_dir = data_dir
        self.replicas = replicas
        self.startup_timeout = startup_timeout
        self.control_address = ""
        self.inference_address = ""
        self.token: str | None = None
        """The admin token ``up`` leaves in its data dir (auth is on by default)."""
        self.ready_s = 0.0
        """From spawning ``modelplane up`` to its ``ready in`` line."""
        self._began = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkstemp(prefix="modelplane-up-", suffix=".log")[1])

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self) -> UpProcess:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        self._began = time.monotonic()
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "modelplane.cli", "up", "--data-dir", str(self.data_dir),
                 "--control-port", "0", "--inference-port", "0",
                 "--replicas", str(self.replicas)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        deadline = self._began + self.startup_timeout
        while time.monotonic() < deadline:
            text = self._log.read_text(errors="replace")
            if "\nready in" in text or text.startswith("ready in"):
                self.ready_s = time.monotonic() - self._began
                found = dict(_ADDRESS.findall(text))
                self.control_address = found["control plane"]
                self.inference_address = found["inference"]
                self.token = read_local_token(self.data_dir)
                return self
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self._log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"`modelplane up` did not become ready:\n{tail}")

    def serve(self, model: str, endpoint: str, artifact: Path, x: np.ndarray) -> float:
        """Register ``artifact``, route ``endpoint`` to it and predict until it answers;
        returns seconds since ``up`` was spawned (the ``up``-to-first-prediction figure)."""
        with ModelplaneClient(self.control_address, token=self.token) as client:
            version = client.register(model, artifact)
            client.set_route(endpoint, [(model, version.version, 100)])
        request = predict_request({"x": x}, endpoint=endpoint)
        with grpc.insecure_channel(self.inference_address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            deadline = time.monotonic() + 60.0
            while True:
                try:
                    stub.Predict(request, timeout=10)
                    return time.monotonic() - self._began
                except grpc.RpcError as exc:
                    if exc.code() not in _RETRY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)

    def stop(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        children = process_tree(proc.pid)[1:]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for child in children:  # `up` stops what it started; this is only the safety net
            try:
                if child.is_running():
                    child.kill()
            except Exception:  # already gone between the check and the kill
                pass
        self._log.unlink(missing_ok=True)
        return proc.returncode

    def __enter__(self) -> UpProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
