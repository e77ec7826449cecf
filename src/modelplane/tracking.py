"""Experiment tracking from a training script, in three lines::

    import modelplane

    with modelplane.start_run(experiment="fraud") as run:
        run.log_params({"lr": 0.001, "depth": 6})
        for step in range(100_000):
            run.log_metric("loss", loss, step=step)

``log_metric`` only checks the value and appends to an in-memory queue (about a
microsecond); a background thread sends the points in batches of thousands, so
a training loop is not slowed by the network or the control plane. Params and
tags are sent at once, so a conflicting param fails where it is logged. Leaving
the ``with`` block flushes every point and ends the run: FINISHED, or FAILED
when the block raised (KILLED on Ctrl-C).

The control plane is found the way the CLI finds it: ``address``, then
``MODELPLANE_CONTROL_ADDRESS``, then the ``run.json`` that ``modelplane up``
writes into the data dir, then the configured default.
"""

from __future__ import annotations

import collections
import getpass
import json
import logging
import math
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from modelplane.v1 import experiments_pb2, experiments_pb2_grpc

_log = logging.getLogger(__name__)

ACTOR_HEADER = "x-modelplane-actor"
# Points kept while the control plane cannot be reached; past this the oldest go.
MAX_PENDING_POINTS = 2_000_000
# A batch larger than this is split, keeping each message well under gRPC limits.
MAX_POINTS_PER_CALL = 100_000
UPLOAD_CHUNK_BYTES = 1 << 20
_RETRYABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
)


class TrackingError(RuntimeError):
    """The control plane refused what the run logged; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _control_address(address: str | None) -> str:
    if address:
        return address
    from_env = os.environ.get("MODELPLANE_CONTROL_ADDRESS")
    if from_env:
        return from_env
    from modelplane.config import Settings

    settings = Settings()
    run_file = settings.data_dir / "run.json"
    if run_file.exists():
        return str(json.loads(run_file.read_text())["control_address"])
    return settings.control_address


def _git_commit() -> str:
    """HEAD of the repository the script runs in; empty outside one."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _actor() -> str:
    return os.environ.get("MODELPLANE_ACTOR") or getpass.getuser()


def _as_text(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): str(value) for key, value in values.items()}


def _refused(error: grpc.RpcError) -> TrackingError:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    return TrackingError(code.name if code is not None else "UNKNOWN", str(details))


def _columns(
    points: list[tuple[str, float, int, float]],
) -> list[experiments_pb2.MetricSeries]:
    """Points as one columnar series per key.

    This thread shares the GIL with the training loop, so the work per point is
    kept in C where possible: ``zip(*points)`` transposes, and the common case
    of one key needs no per-point Python at all but the timestamp conversion.
    """
    keys, values, steps, stamps = zip(*points, strict=True)
    millis = [int(at * 1000) for at in stamps]
    distinct = set(keys)
    if len(distinct) == 1:
        return [
            experiments_pb2.MetricSeries(
                key=keys[0], steps=steps, values=values, timestamps_ms=millis
            )
        ]
    series = []
    for key in sorted(distinct):
        picked = [i for i, k in enumerate(keys) if k == key]
        series.append(
            experiments_pb2.MetricSeries(
                key=key,
                steps=[steps[i] for i in picked],
                values=[values[i] for i in picked],
                timestamps_ms=[millis[i] for i in picked],
            )
        )
    return series


class ActiveRun:
    """A RUNNING run; use it as a context manager or call ``end()``."""

    def __init__(
        self,
        channel: grpc.Channel,
        run: experiments_pb2.Run,
        flush_interval_s: float,
        actor: str,
    ) -> None:
        self._channel = channel
        self._stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
        self._metadata = ((ACTOR_HEADER, actor),)
        self.info = run
        self.run_id = run.run_id
        self.experiment = run.experiment
        # deque.append and popleft are atomic: the loop and the sender share it
        # without a lock. A bounded deque drops the oldest points when the
        # control plane has been unreachable for a long time, never blocks.
        self._queue: collections.deque[tuple[str, float, int, float]] = collections.deque(
            maxlen=MAX_PENDING_POINTS
        )
        self._interval = flush_interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._error: TrackingError | None = None
        self._ended = False
        self.points_sent = 0
        self._sender = threading.Thread(
            target=self._send_loop, name=f"modelplane-run-{self.run_id[:8]}", daemon=True
        )
        self._sender.start()

    # ---------------------------------------------------------------- logging

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Queues one point; raises ValueError for a non-finite value, at once."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {key!r}: expected a finite number, got {value}")
        if self._ended:
            raise TrackingError(
                "FAILED_PRECONDITION", f"run '{self.run_id}' has ended; it accepts no logging"
            )
        self._queue.append((key, value, step, time.time()))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Sent at once: a param that contradicts an earlier one fails here."""
        self._log_now(params=_as_text(params), tags={})

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._log_now(params={}, tags=_as_text(tags))

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def _log_now(self, params: dict[str, str], tags: dict[str, str]) -> None:
        request = experiments_pb2.LogBatchRequest(run_id=self.run_id, params=params, tags=tags)
        try:
            self._stub.LogBatch(request, timeout=30)
        except grpc.RpcError as error:
            raise _refused(error) from None

    def log_artifact(self, local_path: str | Path, artifact_path: str = "") -> str:
        """Streams a file into the artifact store; returns its sha256."""
        local = Path(local_path)

        def stream() -> Iterator[experiments_pb2.UploadArtifactRequest]:
            yield experiments_pb2.UploadArtifactRequest(
                header=experiments_pb2.UploadArtifactHeader(
                    run_id=self.run_id, path=artifact_path or local.name
                )
            )
            with open(local, "rb") as handle:
                while chunk := handle.read(UPLOAD_CHUNK_BYTES):
                    yield experiments_pb2.UploadArtifactRequest(chunk=chunk)

        try:
            stored = self._stub.UploadArtifact(stream(), metadata=self._metadata, timeout=600)
        except grpc.RpcError as error:
            raise _refused(error) from None
        return stored.sha256

    # --------------------------------------------------------------- sending

    def _drain(self, limit: int) -> list[tuple[str, float, int, float]]:
        queue = self._queue
        count = min(len(queue), limit, MAX_POINTS_PER_CALL)
        return [queue.popleft() for _ in range(count)]

    def _send(self, points: list[tuple[str, float, int, float]]) -> None:
        request = experiments_pb2.LogBatchRequest(
            run_id=self.run_id, metrics=_columns(points)
        )
        delay = 0.1
        while True:
            try:
                self._stub.LogBatch(request, timeout=30)
                self.points_sent += len(points)
                return
            except grpc.RpcError as error:
                refused = _refused(error)
                if refused.code not in {c.name for c in _RETRYABLE} or self._stop.is_set():
                    # Not worth retrying (the run ended, a bad key): surface it on
                    # the next flush or at the end of the run.
                    self._error = self._error or refused
                    _log.warning("run %s: %d points not recorded: %s", self.run_id,
                                 len(points), refused)
                    return
                _log.info("run %s: retrying in %.1f s: %s", self.run_id, delay, refused)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _send_loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stop.is_set()
            # Only what was queued when woken: points logged while a batch is on the
            # wire wait for the next wake. Sending those at once instead made a
            # stream of tiny batches whose per-call cost (GIL time taken from the
            # training loop) was ~10 us per point.
            pending = len(self._queue)
            while pending > 0 and self._queue:
                batch = self._drain(pending)
                pending -= len(batch)
                with self._idle:
                    self._in_flight += 1
                try:
                    self._send(batch)
                finally:
                    with self._idle:
                        self._in_flight -= 1
                        self._idle.notify_all()
            with self._idle:
                self._idle.notify_all()
            if stopping:
                return

    def flush(self, timeout_s: float = 60.0) -> None:
        """Waits until every point queued so far has been sent; raises what was refused."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._idle:
            while self._queue or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._sender.is_alive():
                    break
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        if self._error is not None:
            raise self._error
        if self._queue:
            raise TrackingError(
                "DEADLINE_EXCEEDED", f"{len(self._queue)} points still unsent after {timeout_s} s"
            )

    def end(self, status: str = "FINISHED") -> experiments_pb2.Run:
        """Flushes and ends the run with FINISHED, FAILED or KILLED."""
        if self._ended:
            return self.info
        try:
            self.flush()
        finally:
            self._ended = True
            self._stop.set()
            self._wake.set()
            self._sender.join(timeout=60)
            request = experiments_pb2.EndRunRequest(
                run_id=self.run_id, status=experiments_pb2.RunStatus.Value(f"RUN_STATUS_{status}")
            )
            try:
                self.info = self._stub.EndRun(request, metadata=self._metadata, timeout=30)
            except grpc.RpcError as error:
                raise _refused(error) from None
            finally:
                self._channel.close()
        return self.info

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
            return
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self.end(status)
        except TrackingError as error:
            # The block's own exception is the one the user needs to see.
            _log.warning("run %s: could not end cleanly: %s", self.run_id, error)


def start_run(
    experiment: str,
    name: str = "",
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    code_commit: str | None = None,
    dataset_uri: str = "",
    dataset_hash: str = "",
    address: str | None = None,
    flush_interval_s: float = 0.5,
    actor: str | None = None,
) -> ActiveRun:
    """Starts a run in ``experiment`` (created on first use).

    ``code_commit`` defaults to the current git HEAD when the script runs in a
    repository. Raises TrackingError when the control plane refuses the run.
    """
    channel = grpc.insecure_channel(_control_address(address))
    stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
    who = actor or _actor()
    request = experiments_pb2.StartRunRequest(
        experiment=experiment,
        name=name,
        code_commit=_git_commit() if code_commit is None else code_commit,
        dataset_uri=dataset_uri,
        dataset_hash=dataset_hash,
        params=_as_text(params or {}),
        tags=_as_text(tags or {}),
    )
    try:
        run = stub.StartRun(request, metadata=((ACTOR_HEADER, who),), timeout=30)
    except grpc.RpcError as error:
        channel.close()
        raise _refused(error) from None
    return ActiveRun(channel, run, flush_interval_s, who)
