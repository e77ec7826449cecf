"""Dynamic batching: concurrent requests for one version stacked into one run.

Batches form by themselves while the version is busy: a request that finds
nothing running starts a run at once (a lone request never waits), and the
requests arriving meanwhile queue up and go together in the next run, up to
``max_batch_size`` rows. ``max_wait_us`` adds an optional wait for more company,
but only when others are already queued, so it never delays a lone request.

Runs go to one dedicated thread per version (onnxruntime releases the GIL), so
the event loop keeps accepting while a heavy batch computes, and one version's
runs never overlap: that serialisation is what lets the queue fill. A version
whose run is cheaper than a thread hop runs inline on the loop, unbatched.

Each caller is checked on its own before it joins a batch: inputs that fail
the signature, or whose first dimensions disagree, are refused for that caller
only. Requests are stacked only with requests of identical per-row shapes,
dtypes and output names; outputs are split back by row offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.timeline import PredictTimeline
from modelplane.serving.sessions import LoadedModel

_log = logging.getLogger(__name__)

Outputs = dict[str, np.ndarray]


@dataclass(slots=True)
class _Item:
    inputs: dict[str, np.ndarray]
    names: tuple[str, ...]
    rows: int
    group: tuple[object, ...]
    future: asyncio.Future[Outputs] = field(repr=False)
    timeline: PredictTimeline | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class BatchStats:
    runs: int
    requests: int
    largest_batch: int


class VersionRunner:
    """Runs one loaded version: inline, on its thread, or batched on its thread."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch_size: int = 32,
        max_wait_us: int = 0,
        inline: bool | None = None,
        inline_threshold_us: int = 300,
    ) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_us = max_wait_us
        self.batchable = model.batchable
        self.one_row_us = model.probe_us()
        self.inline = (
            inline
            if inline is not None
            else self.one_row_us is not None and self.one_row_us < inline_threshold_us
        )
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[_Item] = deque()
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._runs = 0
        self._requests = 0
        self._largest = 0

    def configure(self, max_batch_size: int, max_wait_us: int) -> None:
        """New limits from a route change; takes effect with the next batch."""
        self.max_batch_size = max_batch_size
        self.max_wait_us = max_wait_us

    @property
    def stats(self) -> BatchStats:
        return BatchStats(self._runs, self._requests, self._largest)

    @property
    def mode(self) -> str:
        if self.inline:
            return "inline"
        return "batched" if self.batching else "thread"

    @property
    def batching(self) -> bool:
        return not self.inline and self.batchable and self.max_batch_size > 1

    async def run(
        self,
        inputs: dict[str, np.ndarray],
        output_names: Sequence[str] = (),
        timeline: PredictTimeline | None = None,
    ) -> Outputs:
        """The version's outputs for ``inputs``; ``timeline`` (if given) gets the
        queue and run stamps."""
        if self.inline:
            return self.run_inline(inputs, output_names, timeline)
        model = self.model
        names = model.output_names(output_names)
        model.validate(inputs)
        if timeline is not None:
            timeline.queued_ns = time.time_ns()
        loop = asyncio.get_running_loop()
        if not self.batching:
            return await self._run_alone(loop, inputs, names, timeline)
        rows = _rows(inputs)
        if not self._draining:
            # Nothing running: this request goes at once, on exactly the path of
            # an unbatched one (no queue entry, no future), and whoever arrives
            # meanwhile queues for the next run.
            self._draining = True
            self._count_run(1)
            try:
                return await self._run_alone(loop, inputs, names, timeline)
            finally:
                if self._pending:
                    self._drain_task = loop.create_task(self._drain())
                else:
                    self._draining = False
        group = (names, *((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items())))
        future: asyncio.Future[Outputs] = loop.create_future()
        self._pending.append(_Item(inputs, names, rows, group, future, timeline))
        return await future

    def run_inline(
        self,
        inputs: dict[str, np.ndarray],
        output_names: Sequence[str] = (),
        timeline: PredictTimeline | None = None,
    ) -> Outputs:
        """``run`` of an inline runner (``inline`` true), called without a coroutine:
        a small model answers on the caller's loop, and the await a coroutine
        costs per call is a visible part of such a request."""
        model = self.model
        names = model.output_names(output_names)
        model.validate(inputs)
        if timeline is None:
            return model.run_checked(inputs, names)
        timeline.queued_ns = time.time_ns()
        return _timed_run(model, inputs, names, timeline)

    def _run_alone(
        self,
        loop: asyncio.AbstractEventLoop,
        inputs: dict[str, np.ndarray],
        names: tuple[str, ...],
        timeline: PredictTimeline | None,
    ) -> asyncio.Future[Outputs]:
        if timeline is None:
            return loop.run_in_executor(self._thread(), self.model.run_checked, inputs, names)
        return loop.run_in_executor(
            self._thread(), _timed_run, self.model, inputs, names, timeline
        )

    # ---------------------------------------------------------------- internals

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            # One thread: runs of a version never overlap, so concurrent
            # requests queue here and the next run takes them together.
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"ort[{self.model.key}]"
            )
        return self._executor

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                if self.max_wait_us and len(self._pending) > 1 and not self._full():
                    await asyncio.sleep(self.max_wait_us / 1e6)
                batch = self._take()
                try:
                    results = await loop.run_in_executor(self._thread(), self._run_batch, batch)
                except Exception as error:  # the whole run failed: every caller hears it
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(error)
                    continue
                for item, result in zip(batch, results, strict=True):
                    if item.future.done():
                        continue  # the caller went away (cancelled)
                    if isinstance(result, Exception):
                        item.future.set_exception(result)
                    else:
                        item.future.set_result(result)
        finally:
            self._draining = False

    def _full(self) -> bool:
        return sum(item.rows for item in self._pending) >= self.max_batch_size

    def _take(self) -> list[_Item]:
        """The oldest request plus queued ones of its group, up to max_batch_size rows."""
        pending = self._pending
        first = pending.popleft()
        batch = [first]
        rows = first.rows
        if pending:
            keep: deque[_Item] = deque()
            while pending:
                item = pending.popleft()
                if item.group == first.group and rows + item.rows <= self.max_batch_size:
                    batch.append(item)
                    rows += item.rows
                else:
                    keep.append(item)
            pending.extend(keep)
        return batch

    def _count_run(self, requests: int) -> None:
        self._runs += 1
        self._requests += requests
        self._largest = max(self._largest, requests)

    def _run_batch(self, batch: list[_Item]) -> list[Outputs | Exception]:
        """On the version's thread: one run for the whole batch, split back per caller."""
        model = self.model
        self._count_run(len(batch))
        started = time.time_ns()
        if len(batch) == 1:
            item = batch[0]
            result = _guarded(model, item.inputs, item.names)
            _stamp(batch, started, item.rows)
            return [result]
        names = batch[0].names
        stacked = {
            name: np.concatenate([item.inputs[name] for item in batch])
            for name in batch[0].inputs
        }
        total = sum(item.rows for item in batch)
        try:
            outputs = model.run_checked(stacked, names)
            _stamp(batch, started, total)
        except Exception:
            # A model may declare a dynamic first dimension and still fail on
            # stacked rows: run each caller alone, so only a caller whose own
            # request fails hears an error.
            _log.debug("stacked run of %s failed; running callers alone", model.key, exc_info=True)
            return [_guarded(model, item.inputs, item.names) for item in batch]
        if any(array.ndim == 0 or array.shape[0] != total for array in outputs.values()):
            # An output that is not row-major in the batch cannot be split:
            # answer each caller with a run of its own instead.
            return [_guarded(model, item.inputs, item.names) for item in batch]
        results: list[Outputs | Exception] = []
        start = 0
        for item in batch:
            end = start + item.rows
            # Copies, so one caller's answer does not keep the whole batch alive.
            results.append({name: array[start:end].copy() for name, array in outputs.items()})
            start = end
        return results


def _timed_run(
    model: LoadedModel,
    inputs: dict[str, np.ndarray],
    names: tuple[str, ...],
    timeline: PredictTimeline,
) -> Outputs:
    timeline.run_start_ns = time.time_ns()
    try:
        return model.run_checked(inputs, names)
    finally:
        timeline.run_end_ns = time.time_ns()
        timeline.batch_requests = 1
        first = next(iter(inputs.values()), None)
        timeline.batch_rows = int(first.shape[0]) if first is not None and first.ndim else 1


def _stamp(batch: list[_Item], started: int, rows: int) -> None:
    """Every caller of one run gets the run's stamps and size."""
    ended = time.time_ns()
    for item in batch:
        timeline = item.timeline
        if timeline is not None:
            timeline.run_start_ns = started
            timeline.run_end_ns = ended
            timeline.batch_requests = len(batch)
            timeline.batch_rows = rows


def _guarded(model: LoadedModel, inputs: dict[str, np.ndarray], names: tuple[str, ...]) -> (
    Outputs | Exception
):
    try:
        return model.run_checked(inputs, names)
    except Exception as error:
        return error


def _rows(inputs: dict[str, np.ndarray]) -> int:
    """The request's row count: every input must agree on its first dimension."""
    rows: int | None = None
    first = ""
    for name, array in inputs.items():
        if array.ndim == 0:
            raise InvalidArgument(f"input '{name}': a batched model needs a leading batch axis")
        if rows is None:
            rows, first = array.shape[0], name
        elif array.shape[0] != rows:
            raise InvalidArgument(
                f"input '{name}': has {array.shape[0]} rows but input '{first}' has {rows}; "
                "every input of a request must have the same first dimension"
            )
    return rows or 0

