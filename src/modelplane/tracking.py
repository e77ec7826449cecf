"""Experiment tracking from a training script, in three lines::

    import modelplane

    with modelplane.start_run(experiment="fraud") as run:
        run.log_params({"lr": 0.001, "depth": 6})
        for step in range(100_000):
            run.log_metric("loss", loss, step=step)

``log_metric`` only checks the value and appends it to in-memory columns (about a
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

import getpass
import json
import logging
import math
import os
import subprocess
import threading
import time
from array import array
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


class _Columns:
    """One metric's pending points, column by column."""

    __slots__ = ("stamps_ms", "steps", "values")

    def __init__(self) -> None:
        self.steps = array("q")
        self.values = array("d")
        self.stamps_ms = array("q")


class _PointBuffer:
    """Points waiting to be sent, per key and in columns.

    A training loop logs from its thread while the sender takes batches from
    another. Columns of machine numbers instead of a tuple per point: nothing
    for the garbage collector to walk (its passes over hundreds of thousands of
    queued tuples were about half of what logging cost a fast loop) and nothing
    to transpose before sending. Bounded: past ``limit`` pending points new ones
    are dropped and counted, so an unreachable control plane never exhausts
    memory.
    """

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, _Columns] = {}
        self._count = 0
        self._limit = limit
        self.dropped = 0

    def add(self, key: str, value: float, step: int, stamp_ms: int) -> None:
        with self._lock:
            if self._count >= self._limit:
                self.dropped += 1
                return
            columns = self._by_key.get(key)
            if columns is None:
                columns = self._by_key[key] = _Columns()
            columns.steps.append(step)
            columns.values.append(value)
            columns.stamps_ms.append(stamp_ms)
            self._count += 1

    def __len__(self) -> int:
        return self._count

    def take(self) -> dict[str, _Columns]:
        """Everything pending now; the buffer starts empty again."""
        with self._lock:
            taken, self._by_key, self._count = self._by_key, {}, 0
        return taken


def _requests(
    run_id: str, taken: dict[str, _Columns], per_call: int
) -> Iterator[tuple[experiments_pb2.LogBatchRequest, int]]:
    """(request, points in it): the taken columns in calls of at most ``per_call`` points."""
    series: list[experiments_pb2.MetricSeries] = []
    points = 0
    for key in sorted(taken):
        columns = taken[key]
        start = 0
        while start < len(columns.steps):
            end = min(start + per_call - points, len(columns.steps))
            series.append(
                experiments_pb2.MetricSeries(
                    key=key,
                    steps=columns.steps[start:end],
                    values=columns.values[start:end],
                    timestamps_ms=columns.stamps_ms[start:end],
                )
            )
            points += end - start
            start = end
            if points >= per_call:
                yield experiments_pb2.LogBatchRequest(run_id=run_id, metrics=series), points
                series, points = [], 0
    if series:
        yield experiments_pb2.LogBatchRequest(run_id=run_id, metrics=series), points


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
        self._pending = _PointBuffer(MAX_PENDING_POINTS)
        self._interval = flush_interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._error: TrackingError | None = None
        self._ended = False
        self.points_sent = 0
        self.batches_sent = 0
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
        self._pending.add(key, value, step, time.time_ns() // 1_000_000)

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

    @property
    def points_dropped(self) -> int:
        """Points not kept because too many were pending (control plane unreachable)."""
        return self._pending.dropped

    def _send(self, request: experiments_pb2.LogBatchRequest, points: int) -> None:
        delay = 0.1
        while True:
            try:
                self._stub.LogBatch(request, timeout=30)
                self.points_sent += points
                self.batches_sent += 1
                return
            except grpc.RpcError as error:
                refused = _refused(error)
                if refused.code not in {c.name for c in _RETRYABLE} or self._stop.is_set():
                    # Not worth retrying (the run ended, a bad key): surface it on
                    # the next flush or at the end of the run.
                    self._error = self._error or refused
                    _log.warning("run %s: %d points not recorded: %s", self.run_id,
                                 points, refused)
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
            # In flight before the take, so flush() never sees neither pending
            # points nor a batch on the wire while one is being taken.
            with self._idle:
                self._in_flight += 1
            try:
                taken = self._pending.take()
                for request, points in _requests(self.run_id, taken, MAX_POINTS_PER_CALL):
                    self._send(request, points)
            finally:
                with self._idle:
                    self._in_flight -= 1
                    self._idle.notify_all()
            if stopping:
                return

    def flush(self, timeout_s: float = 60.0) -> None:
        """Waits until every point queued so far has been sent; raises what was refused."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._idle:
            while len(self._pending) or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._sender.is_alive():
                    break
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        if self._error is not None:
            raise self._error
        if len(self._pending):
            raise TrackingError(
                "DEADLINE_EXCEEDED",
                f"{len(self._pending)} points still unsent after {timeout_s} s",
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
