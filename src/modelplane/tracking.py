"""Experiment tracking from a training script, in three lines::

    import modelplane

    with modelplane.start_run(experiment="fraud") as run:
        run.log_params({"lr": 0.001, "depth": 6})
        for step in range(100_000):
            run.log_metric("loss", loss, step=step)

``log_metric`` only checks the value and appends it to in-memory columns, without
a lock (under a microsecond in a tight loop, about three between real training
steps, whose work evicts it from the CPU caches); a background thread sends the
points in batches of thousands, so a training loop is not slowed by the network
or the control plane. Params and
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
import numpy as np
import numpy.typing as npt

from modelplane.codec.wire import LEN, field, tag, text
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


_Points = tuple["array[int]", "array[float]", "array[int]"]  # steps, values, stamps (ns)


class _Columns:
    """One metric's pending points from one logging thread, column by column.

    Only that thread appends (step, then value, then timestamp) and only the
    sender removes, from the front: see ``_PointBuffer``. Timestamps are kept in
    ns as the clock gives them; the sender turns them into ms for all points at
    once.
    """

    __slots__ = ("key", "stamps_ns", "steps", "values")

    def __init__(self, key: str) -> None:
        self.key = key
        self.steps = array("q")
        self.values = array("d")
        self.stamps_ns = array("q")

    def take(self) -> _Points | None:
        """The complete points appended so far, removed; None when there are none.

        Timestamps are appended last, so the first ``len(stamps_ns)`` entries of
        every column are whole points even while the logging thread is between
        two appends. Each slice and ``del`` is one C call made holding the GIL,
        so the logging thread's appends land wholly before or after it.
        """
        count = len(self.stamps_ns)
        if not count:
            return None
        taken = self.steps[:count], self.values[:count], self.stamps_ns[:count]
        del self.steps[:count]
        del self.values[:count]
        del self.stamps_ns[:count]
        return taken


class _PointBuffer:
    """Points waiting to be sent, per logging thread and key, in columns.

    A training loop logs from its thread while the sender takes batches from
    another. Columns of machine numbers instead of a tuple per point: nothing
    for the garbage collector to walk (its passes over hundreds of thousands of
    queued tuples were about half of what logging cost a fast loop) and nothing
    to transpose before sending.

    No lock on the logging path (taking one cost ~0.3 us a point): each
    thread appends only to its own columns, and the sender removes whole points
    from their front without swapping them (``_Columns.take``), so a point
    logged while a batch is being taken is neither lost nor split; it goes in
    the next batch.

    Bounded, so an unreachable control plane never exhausts memory: a column
    past its share of ``limit`` takes a point only while all columns together
    hold fewer than ``limit`` (counting them all on every point would cost the
    loop), so pending points stay under twice ``limit``; with one metric from
    one thread, under ``limit``. Points refused are dropped and counted.
    """

    def __init__(self, limit: int) -> None:
        self._mine = threading.local()  # .by_key: this thread's columns
        self._registering = threading.Lock()
        self._all: list[_Columns] = []
        self._limit = limit
        # A column shorter than its share of the limit needs no sum over all of them.
        self._column_share = limit
        self.dropped = 0

    def add(self, key: str, value: float, step: int, stamp_ns: int) -> None:
        try:
            columns: _Columns = self._mine.by_key[key]
        except (AttributeError, KeyError):
            columns = self._register(key)
        if len(columns.stamps_ns) >= self._column_share and len(self) >= self._limit:
            self.dropped += 1
            return
        # Step first: it is the one that can be refused (not an int, out of range),
        # and then nothing has been appended.
        columns.steps.append(step)
        columns.values.append(value)
        columns.stamps_ns.append(stamp_ns)

    def _register(self, key: str) -> _Columns:
        """The first point of ``key`` from this thread: new columns the sender can see."""
        by_key: dict[str, _Columns] = getattr(self._mine, "by_key", None) or {}
        columns = by_key[key] = _Columns(key)
        with self._registering:
            self._all.append(columns)
            self._column_share = max(1, self._limit // len(self._all))
        self._mine.by_key = by_key
        return columns

    def __len__(self) -> int:
        return sum(len(columns.stamps_ns) for columns in self._columns())

    def _columns(self) -> list[_Columns]:
        with self._registering:
            return list(self._all)

    def take(self) -> list[tuple[str, _Points]]:
        """Everything pending now, by key (a key once per logging thread), removed."""
        taken = []
        for columns in self._columns():
            points = columns.take()
            if points is not None:
                taken.append((columns.key, points))
        return sorted(taken, key=lambda item: item[0])


# The request is written field by field instead of through protobuf message
# objects, which convert repeated fields one Python number at a time (a quarter
# of a microsecond per point, taken from the training loop's GIL). The layout
# is protobuf's own; tests check it byte for byte against SerializeToString.
_LOG_BATCH = experiments_pb2.DESCRIPTOR.services_by_name["ExperimentService"].methods_by_name[
    "LogBatch"
]
_LOG_BATCH_PATH = f"/{_LOG_BATCH.containing_service.full_name}/{_LOG_BATCH.name}"
# A value needs one more byte for every one of these it reaches; at most ten bytes.
_VARINT_THRESHOLDS = np.array([1 << shift for shift in range(7, 64, 7)], dtype=np.uint64)
_VARINT_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)


def _varints(numbers: npt.NDArray[np.int64]) -> bytes:
    """int64s as packed protobuf varints (a negative one takes ten bytes).

    Whole columns at once: a table of every value's 7-bit groups, one row per
    group position (so each numpy pass runs along a contiguous row), the
    continuation bit on all but each value's last group, then read value by
    value, keeping the groups each one needs.
    """
    if not len(numbers):
        return b""
    values = numbers.view(np.uint64)
    lengths = np.searchsorted(_VARINT_THRESHOLDS, values, side="right") + 1
    width = int(lengths.max())
    groups = ((values >> _VARINT_SHIFTS[:width, None]) & np.uint64(0x7F)).astype(np.uint8)
    position = np.arange(width)[:, None]
    groups |= (position < lengths - 1).view(np.uint8) << 7
    if int(lengths.min()) == width:  # all as long (timestamps): no value to trim
        return groups.T.tobytes()
    return groups.T[(position < lengths).T].tobytes()


def _nonempty(field_tag: bytes, payload: bytes) -> bytes:
    # proto3 leaves out an empty repeated field
    return field(field_tag, payload) if payload else b""


_LITTLE_ENDIAN_F8 = np.dtype("<f8")
# LogBatchRequest: run_id 1, metrics 4; MetricSeries: key 1, steps 2, values 3, timestamps_ms 4.
_RUN_ID, _METRICS = tag(1, LEN), tag(4, LEN)
_KEY, _STEPS, _VALUES, _STAMPS = (tag(number, LEN) for number in (1, 2, 3, 4))


def _metric_series(
    key: str, steps: array[int], values: array[float], stamps_ns: array[int]
) -> bytes:
    """A MetricSeries message."""
    stamps_ms = np.frombuffer(stamps_ns, dtype=np.int64) // 1_000_000
    as_f8 = np.frombuffer(values, dtype=np.float64).astype(_LITTLE_ENDIAN_F8)
    return b"".join(
        (
            text(_KEY, key),
            _nonempty(_STEPS, _varints(np.frombuffer(steps, dtype=np.int64))),
            _nonempty(_VALUES, as_f8.tobytes()),
            _nonempty(_STAMPS, _varints(stamps_ms)),
        )
    )


def _requests(
    run_id: str, taken: list[tuple[str, _Points]], per_call: int
) -> Iterator[tuple[bytes, int]]:
    """(serialized LogBatchRequest, points in it): calls of at most ``per_call`` points."""
    head = text(_RUN_ID, run_id)
    series: list[bytes] = [head]
    points = 0
    for key, (steps, values, stamps_ns) in taken:
        start = 0
        while start < len(steps):
            end = min(start + per_call - points, len(steps))
            message = _metric_series(key, steps[start:end], values[start:end], stamps_ns[start:end])
            series.append(field(_METRICS, message))
            points += end - start
            start = end
            if points >= per_call:
                yield b"".join(series), points
                series, points = [head], 0
    if points:
        yield b"".join(series), points


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
        # LogBatch with the request already serialized (see ``_requests``).
        self._log_batch_bytes: grpc.UnaryUnaryMultiCallable[
            bytes, experiments_pb2.LogBatchResponse
        ] = channel.unary_unary(
            _LOG_BATCH_PATH,
            request_serializer=None,
            response_deserializer=experiments_pb2.LogBatchResponse.FromString,
        )
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
        self._pending.add(key, value, step, time.time_ns())

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

    def _send(self, request: bytes, points: int) -> None:
        delay = 0.1
        while True:
            try:
                self._log_batch_bytes(request, timeout=30)
                self.points_sent += points
                self.batches_sent += 1
                return
            except grpc.RpcError as error:
                refused = _refused(error)
                if refused.code not in {c.name for c in _RETRYABLE} or self._stop.is_set():
                    # Not worth retrying (the run ended, a bad key): surface it on
                    # the next flush or at the end of the run.
                    self._error = self._error or refused
                    _log.warning("run %s: %d points not recorded: %s", self.run_id, points, refused)
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
    flush_interval_s: float = 1.0,
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
