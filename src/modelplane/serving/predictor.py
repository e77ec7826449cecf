"""The predict use case, shared by every inference protocol a replica speaks.

Servicers decode their wire format into an ``InferenceRequest``, call
``Predictor.predict`` and encode the ``Prediction``; routing, loading, batching,
fallback and shadowing live here once. The routing table is an attribute the
replica swaps whole; a request reads it once and resolves its version and
session from that one table, so a swap in the middle of a request never mixes
two generations, and a request that started on a version finishes on it even
if the swap unloads it (it holds the session).

Shadow copies run as tasks started after the primary answered: they never
delay the caller, their answers are only compared (routing/shadow.py), and at
most ``max_shadow_in_flight`` run at once; beyond that mirrors are skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from modelplane.codec.inference import InferenceRequest
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import ModelVersion, RouteReason, VersionKey
from modelplane.domain.timeline import PredictTimeline, ShadowTiming
from modelplane.routing.shadow import ShadowBook, compare
from modelplane.routing.table import EndpointRoute, RouteTable
from modelplane.serving.batcher import VersionRunner
from modelplane.serving.sessions import LoadedModel, SessionCache

_log = logging.getLogger(__name__)


class PredictionIds:
    """Unique, cheap ids: a random per-process prefix and a counter (32 hex digits)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        # next() on itertools.count is atomic under the GIL: no lock needed.
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


@dataclass(frozen=True, slots=True)
class Prediction:
    outputs: dict[str, np.ndarray]
    # Empty when the request named a model directly.
    endpoint: str
    model: str
    version: int
    prediction_id: str
    route_reason: RouteReason = RouteReason.PINNED
    timeline: PredictTimeline = field(default_factory=PredictTimeline)
    """When it was routed, queued and run (and, later, its shadows): for spans and stats."""


@dataclass(frozen=True, slots=True)
class BatchingDefaults:
    max_batch_size: int = 32
    max_wait_us: int = 0
    inline_threshold_us: int = 300


class Predictor:
    def __init__(
        self,
        sessions: SessionCache,
        table: RouteTable | None = None,
        *,
        batching: BatchingDefaults | None = None,
        max_shadow_in_flight: int = 64,
    ) -> None:
        self.sessions = sessions
        self.table: RouteTable = table if table is not None else RouteTable.empty()
        """Swapped whole by the replica; assignment is atomic, readers never lock."""
        self._ids = PredictionIds()
        self.lazy_loads: set[VersionKey] = set()
        """Versions loaded on demand because a request named them directly."""
        self.batching = batching or BatchingDefaults()
        self._runners: dict[VersionKey, VersionRunner] = {}
        self.shadows = ShadowBook()
        self.max_shadow_in_flight = max_shadow_in_flight
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self.shadows_skipped = 0

    async def predict(
        self, request: InferenceRequest, *, sticky_key: bytes | None = None
    ) -> Prediction:
        """Routes, runs and answers one request.

        ``sticky_key`` (the ``x-modelplane-key`` metadata) assigns the request by
        consistent hashing; without it, the route's sticky input's value does.
        """
        timeline = PredictTimeline(time.time_ns())
        table = self.table
        if request.endpoint is None:
            assert request.model is not None  # decoding guarantees one target
            key = table.resolve_model(request.model, request.version, request.alias)
            timeline.routed_ns = time.time_ns()
            outputs = self._run_now(key, request, timeline)
            if outputs is None:
                outputs = await self._run(table, key, request, timeline)
            return Prediction(
                outputs, "", key.model, key.version, self._ids.next(), RouteReason.PINNED,
                timeline,
            )
        endpoint = request.endpoint
        route = table.route(endpoint)
        if sticky_key is None and route.sticky_input:
            value = request.inputs.get(route.sticky_input)
            if value is not None:
                sticky_key = value.tobytes()
        key, reason = route.pick(sticky_key)
        timeline.routed_ns = time.time_ns()
        try:
            outputs = self._run_now(key, request, timeline)
            if outputs is None:
                outputs = await self._run(table, key, request, timeline)
        except InvalidArgument:
            raise  # the caller's mistake: another version would refuse it too
        except Exception as error:
            fallback = route.fallback
            if fallback is None or fallback == key:
                raise
            _log.warning("endpoint '%s': %s failed (%s); answering with %s", endpoint, key,
                         error, fallback)
            key, reason = fallback, RouteReason.FALLBACK
            outputs = await self._run(table, key, request, timeline)
        if route.shadows:
            self._mirror(table, route, key, request, outputs, timeline)
        return Prediction(
            outputs, endpoint, key.model, key.version, self._ids.next(), reason, timeline
        )

    def runner(self, model: LoadedModel) -> VersionRunner:
        """The version's runner, configured by the current table (or the defaults)."""
        runner = self._runners.get(model.key)
        if runner is None or runner.model is not model:
            runner = self._new_runner(model, self.table)
            self._runners[model.key] = runner
        return runner

    def _new_runner(self, model: LoadedModel, table: RouteTable) -> VersionRunner:
        defaults = self.batching
        # Building a runner probes one run of the model: the session's first run,
        # which allocates and can take milliseconds.
        runner = VersionRunner(
            model,
            max_batch_size=defaults.max_batch_size,
            max_wait_us=defaults.max_wait_us,
            inline_threshold_us=defaults.inline_threshold_us,
        )
        self._configure(runner, table)
        one_row = runner.one_row_us
        _log.info(
            "%s runs %s (one-row run %s, batchable %s)",
            model.key,
            runner.mode,
            "unknown" if one_row is None else f"{one_row:.0f} us",
            runner.batchable,
        )
        return runner

    def prepare_runners(self, table: RouteTable) -> None:
        """Builds the runners a table's routes need, before the table serves.

        On the watcher thread, so a version's first request finds it warm instead
        of paying the probe run on the event loop (make-before-break, like the
        sessions themselves).
        """
        runners = dict(self._runners)
        for key in table.versions_needed():
            model = self.sessions.get(key)
            current = runners.get(key)
            if model is not None and (current is None or current.model is not model):
                runners[key] = self._new_runner(model, table)
        self._runners = runners

    def table_changed(self, table: RouteTable) -> None:
        """Applies a new table's batching limits and forgets runners of unloaded versions."""
        # Called on the watcher thread while the loop reads and adds runners:
        # iterate over a copy and replace the dict whole, never mutate it here.
        loaded = self.sessions.loaded_keys()
        kept = {key: runner for key, runner in list(self._runners.items()) if key in loaded}
        self._runners = kept
        for runner in kept.values():
            self._configure(runner, table)

    def _configure(self, runner: VersionRunner, table: RouteTable) -> None:
        limits = table.batching.get(runner.model.key)
        if limits is None:
            runner.configure(self.batching.max_batch_size, self.batching.max_wait_us)
        else:
            runner.configure(
                limits.max_batch_size or self.batching.max_batch_size,
                limits.max_wait_us or self.batching.max_wait_us,
            )

    async def _run(
        self,
        table: RouteTable,
        key: VersionKey,
        request: InferenceRequest,
        timeline: PredictTimeline | None = None,
    ) -> dict[str, np.ndarray]:
        model = self.sessions.get(key)
        if model is None:
            model = await self._load(table.version_info(key))
        return await self.runner(model).run(request.inputs, request.output_names, timeline)

    def _run_now(
        self, key: VersionKey, request: InferenceRequest, timeline: PredictTimeline
    ) -> dict[str, np.ndarray] | None:
        """The outputs at once when the version is loaded and runs inline (a small
        model: the common case), without the awaits of ``_run``; else None."""
        model = self.sessions.get(key)
        if model is None:
            return None
        runner = self.runner(model)
        if not runner.inline:
            return None
        return runner.run_inline(request.inputs, request.output_names, timeline)

    def _mirror(
        self,
        table: RouteTable,
        route: EndpointRoute,
        primary: VersionKey,
        request: InferenceRequest,
        outputs: dict[str, np.ndarray],
        timeline: PredictTimeline,
    ) -> None:
        for shadow in route.shadows:
            if shadow.key == primary or np.random.random() * 100.0 >= shadow.percent:
                continue
            if len(self._shadow_tasks) >= self.max_shadow_in_flight:
                self.shadows_skipped += 1
                continue
            timeline.expect_shadows()
            task = asyncio.get_running_loop().create_task(
                self._shadow(table, route.endpoint, primary, shadow.key, request, outputs,
                             timeline)
            )
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(
        self,
        table: RouteTable,
        endpoint: str,
        primary: VersionKey,
        shadow: VersionKey,
        request: InferenceRequest,
        expected: dict[str, np.ndarray],
        timeline: PredictTimeline,
    ) -> None:
        started = time.time_ns()
        try:
            got = await self._run(table, shadow, request)
        except Exception as error:
            _log.debug("shadow %s of endpoint '%s' failed: %s", shadow, endpoint, error)
            self.shadows.record_error(endpoint, primary, shadow)
            timeline.shadow_done(
                ShadowTiming(shadow.model, shadow.version, started, time.time_ns(), False)
            )
            return
        timeline.shadow_done(
            ShadowTiming(shadow.model, shadow.version, started, time.time_ns(), True)
        )
        wanted = {name: got[name] for name in expected if name in got}
        self.shadows.record(endpoint, primary, shadow, compare(expected, wanted))

    async def _load(self, version: ModelVersion) -> LoadedModel:
        # Reading the artifact and building a session can take seconds; off the
        # event loop so the other requests keep flowing meanwhile.
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(None, self.sessions.load, version)
        self.lazy_loads.add(model.key)
        return model
