"""``modelplane.v1.InferenceService`` on grpc.aio: decode -> route -> run -> encode.

The routing table is an attribute the replica swaps whole; a request reads it
once and resolves its version and session from that one table, so a swap in the
middle of a request never mixes two generations, and a request that started on
a version finishes on it even if the swap unloads it (it holds the session).

Domain errors propagate: the server's ``AsyncErrorInterceptor`` maps them to a
status, and the telemetry context manager records that status on the way out.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from modelplane.codec.inference import decode_predict_request, encode_predict_response
from modelplane.domain.models import ModelVersion
from modelplane.routing.table import RouteTable
from modelplane.serving.sessions import LoadedModel, SessionCache
from modelplane.v1 import inference_pb2, inference_pb2_grpc

_log = logging.getLogger(__name__)


class PredictObservation(Protocol):
    def answered(self, endpoint: str, model: str, version: int, prediction_id: str) -> None: ...


class PredictTelemetry(Protocol):
    """What the servicer needs of ``modelplane.telemetry.data_plane.DataPlaneTelemetry``."""

    def observe_predict(
        self, metadata: Sequence[tuple[str, str | bytes]], endpoint: str = ""
    ) -> AbstractContextManager[PredictObservation]: ...


class PredictionIds:
    """Unique, cheap ids: a random per-process prefix and a counter (32 hex digits)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        # next() on itertools.count is atomic under the GIL: no lock needed.
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(
        self,
        sessions: SessionCache,
        table: RouteTable | None = None,
        telemetry: PredictTelemetry | None = None,
    ) -> None:
        self.sessions = sessions
        self.table: RouteTable = table if table is not None else RouteTable.empty()
        """Swapped whole by the replica; assignment is atomic, readers never lock."""
        self._telemetry = telemetry
        self._ids = PredictionIds()
        self.lazy_loads: set[Any] = set()
        """Versions loaded on demand because a request named them directly."""

    async def Predict(
        self,
        request: inference_pb2.PredictRequest,
        context: Any,
    ) -> inference_pb2.PredictResponse:
        telemetry = self._telemetry
        if telemetry is None:
            return await self._predict(request)
        with telemetry.observe_predict(
            context.invocation_metadata() or (), request.endpoint
        ) as observation:
            response = await self._predict(request)
            observation.answered(
                response.endpoint, response.model, response.version, response.prediction_id
            )
            return response

    async def _predict(
        self, request: inference_pb2.PredictRequest
    ) -> inference_pb2.PredictResponse:
        decoded = decode_predict_request(request)
        table = self.table
        if decoded.endpoint is not None:
            endpoint = decoded.endpoint
            key = table.pick(endpoint)
        else:
            endpoint = ""
            assert decoded.model is not None  # decode guarantees one target
            key = table.resolve_model(decoded.model, decoded.version, decoded.alias)
        model = self.sessions.get(key)
        if model is None:
            model = await self._load(table.version_info(key))
        outputs = model.run(decoded.inputs, decoded.output_names)
        return encode_predict_response(outputs, endpoint, key.model, key.version, self._ids.next())

    async def _load(self, version: ModelVersion) -> LoadedModel:
        # Reading the artifact and building a session can take seconds; off the
        # event loop so the other requests keep flowing meanwhile.
        loop = asyncio.get_running_loop()
        model = await loop.run_in_executor(None, self.sessions.load, version)
        self.lazy_loads.add(model.key)
        return model
