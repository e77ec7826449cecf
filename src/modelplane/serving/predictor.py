"""The predict use case, shared by every inference protocol a replica speaks.

Servicers decode their wire format into an ``InferenceRequest``, call
``Predictor.predict`` and encode the ``Prediction``; routing, loading and
running live here once. The routing table is an attribute the replica swaps
whole; a request reads it once and resolves its version and session from that
one table, so a swap in the middle of a request never mixes two generations,
and a request that started on a version finishes on it even if the swap
unloads it (it holds the session).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass

import numpy as np

from modelplane.codec.inference import InferenceRequest
from modelplane.domain.models import ModelVersion, VersionKey
from modelplane.routing.table import RouteTable
from modelplane.serving.sessions import LoadedModel, SessionCache


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


class Predictor:
    def __init__(self, sessions: SessionCache, table: RouteTable | None = None) -> None:
        self.sessions = sessions
        self.table: RouteTable = table if table is not None else RouteTable.empty()
        """Swapped whole by the replica; assignment is atomic, readers never lock."""
        self._ids = PredictionIds()
        self.lazy_loads: set[VersionKey] = set()
        """Versions loaded on demand because a request named them directly."""

    async def predict(self, request: InferenceRequest) -> Prediction:
        table = self.table
        if request.endpoint is not None:
            endpoint = request.endpoint
            key = table.pick(endpoint)
        else:
            endpoint = ""
            assert request.model is not None  # decoding guarantees one target
            key = table.resolve_model(request.model, request.version, request.alias)
        model = self.sessions.get(key)
        if model is None:
            model = await self._load(table.version_info(key))
        outputs = model.run(request.inputs, request.output_names)
        return Prediction(outputs, endpoint, key.model, key.version, self._ids.next())

    async def _load(self, version: ModelVersion) -> LoadedModel:
        # Reading the artifact and building a session can take seconds; off the
        # event loop so the other requests keep flowing meanwhile.
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(None, self.sessions.load, version)
        self.lazy_loads.add(model.key)
        return model
