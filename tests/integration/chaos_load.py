"""Steady prediction traffic in a background thread, counting every outcome."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import grpc

from modelplane.v1 import inference_pb2
from tests.integration.serving_plane import predict_request


class Load:
    """Calls ``predict`` back to back until stopped; ``failures`` maps status -> count."""

    def __init__(
        self,
        predict: Callable[[inference_pb2.PredictRequest], inference_pb2.PredictResponse],
        endpoint: str = "open",
        pause_s: float = 0.002,
    ) -> None:
        self._predict = predict
        self._request = predict_request(endpoint)
        self._pause = pause_s
        self._stop = threading.Event()
        self.ok = 0
        self.failures: collections.Counter[str] = collections.Counter()
        # "CODE: details" -> count: which failures, not just how many.
        self.errors: collections.Counter[str] = collections.Counter()
        self.last_error = ""
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._predict(self._request)
                self.ok += 1
            except grpc.RpcError as err:
                self.failures[err.code().name] += 1
                self.last_error = f"{err.code().name}: {err.details()}"
                self.errors[self.last_error] += 1
            time.sleep(self._pause)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_for(self, count: int, timeout_s: float = 20.0) -> None:
        """Until ``count`` more predictions succeeded (proof traffic is flowing now)."""
        target = self.ok + count
        deadline = time.monotonic() + timeout_s
        while self.ok < target:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"traffic stalled: {self.ok}/{target} ok, failures {dict(self.failures)}, "
                    f"last {self.last_error}"
                )
            time.sleep(0.01)

    @property
    def total(self) -> int:
        return self.ok + sum(self.failures.values())
