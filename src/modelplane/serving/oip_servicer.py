"""``inference.GRPCInferenceService`` (Open Inference Protocol) on a replica's grpc.aio server.

A call is decode -> the shared ``Predictor`` -> encode, exactly like
``modelplane.v1.InferenceService``, so routing, hot swap, batching and
telemetry behave the same whichever protocol a caller speaks.

Naming: ``model_name`` is an endpoint (routed) or a model (named directly). An
empty ``model_version`` lets the route decide (or, for a model, takes its latest
version); a number pins that version of the model, or, for an endpoint whose
targets are all one model, of that model. The response's ``model_version`` is
the version that answered; its parameters say which model, endpoint and
prediction id, for callers of split endpoints.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from modelplane import __version__
from modelplane.codec.inference import InferenceRequest, sticky_key_from_metadata
from modelplane.codec.oip import (
    OipInferRequest,
    decode_infer_request,
    parse_version,
    tensor_metadata,
)
from modelplane.codec.oip_wire import InferResponseEncoder, stream_response
from modelplane.domain.errors import FailedPrecondition, InvalidArgument, ModelplaneError, NotFound
from modelplane.domain.models import VersionKey
from modelplane.oip import grpc_service_pb2 as pb
from modelplane.oip import grpc_service_pb2_grpc as pb_grpc
from modelplane.registry.audit_context import ANONYMOUS, acting_as
from modelplane.routing.table import RouteTable
from modelplane.serving.inference_servicer import (
    NOT_OBSERVED,
    PredictObservation,
    PredictTelemetry,
)
from modelplane.serving.oip_repository import OipRepository, ParameterValue
from modelplane.serving.oip_stats import Duration, InferenceStatistics, VersionStats
from modelplane.serving.predictor import Prediction, Predictor

_log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "modelplane"
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ("model_repository", "statistics", "parameters")
ACTOR_HEADER = "x-modelplane-actor"
REASON_HEADER = "x-modelplane-reason"
_INTERNAL = "internal error"
_DEFAULT_MAX_TENSOR_BYTES = 64 * 1024 * 1024
# Response parameters naming what answered, for callers of split endpoints.
MODEL_PARAMETER = "modelplane.model"
ENDPOINT_PARAMETER = "modelplane.endpoint"
PREDICTION_ID_PARAMETER = "modelplane.prediction_id"
# Methods whose handlers return their answers already serialized (codec/oip_wire.py).
PRE_ENCODED_METHODS = (f"/{SERVICE_NAME}/ModelInfer", f"/{SERVICE_NAME}/ModelStreamInfer")
# Methods whose decoding applies the tensor limits itself: the limits
# interceptor leaves them to it instead of walking the shapes a second time.
LIMITS_CHECKED_METHODS = (f"/{SERVICE_NAME}/ModelInfer",)

# (endpoint, model, version): exactly one of endpoint and model is set.
Target = tuple[str | None, str | None, int | None]


def _metadata(context: Any) -> Sequence[tuple[str, str | bytes]]:
    return tuple(context.invocation_metadata() or ())


def _header(metadata: Sequence[tuple[str, str | bytes]], name: str) -> str:
    for key, value in metadata:
        if key == name and isinstance(value, str):
            return value
    return ""


def _parameters(parameters: Any) -> dict[str, ParameterValue]:
    values: dict[str, ParameterValue] = {}
    for key, parameter in parameters.items():
        which = parameter.WhichOneof("parameter_choice")
        if which is not None:
            values[key] = getattr(parameter, which)
    return values


def _blame(table: RouteTable, name: str, model: str | None, version: int | None) -> tuple[str, int]:
    """The (model, version) a request that failed after routing is counted against:
    the version it named, the endpoint's only version, or the name with version 0.
    Worked out only on failure, off the common path."""
    if model is not None:
        return model, version or 0
    route = table.endpoint(name)
    if route is not None and len(route.keys) == 1:
        return route.keys[0].model, route.keys[0].version
    return name, 0


def _rows(request: OipInferRequest) -> int:
    for array in request.inputs.values():
        return int(array.shape[0]) if array.ndim else 1
    return 0


class OipServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        predictor: Predictor,
        *,
        repository: OipRepository | None = None,
        ready: Callable[[], bool] = lambda: True,
        telemetry: PredictTelemetry | None = None,
        max_tensor_bytes: int = _DEFAULT_MAX_TENSOR_BYTES,
        max_rows: int = 0,
        max_elements: int = 0,
    ) -> None:
        """``max_rows``/``max_elements``: the tensor limits, applied while decoding
        (so the limits interceptor skips LIMITS_CHECKED_METHODS; see there)."""
        self.predictor = predictor
        self.statistics = InferenceStatistics()
        self._repository = repository
        self._ready = ready
        self._telemetry = telemetry
        self._max_tensor_bytes = max_tensor_bytes
        self._max_rows = max_rows
        self._max_elements = max_elements
        self._encoder = InferResponseEncoder(
            PREDICTION_ID_PARAMETER, (MODEL_PARAMETER, ENDPOINT_PARAMETER)
        )

    # ------------------------------------------------------------------ naming

    @staticmethod
    def _target(table: RouteTable, name: str, version: int | None) -> Target:
        """(endpoint, None, None) for a routed request, else (None, model, version)."""
        route = table.endpoint(name)
        if version is None:
            if route is not None:
                return name, None, None
            return None, name, None
        if route is not None and not table.has_version(VersionKey(name, version)):
            models = {key.model for key in route.keys}
            if len(models) == 1:
                return None, models.pop(), version
            if len(models) > 1:
                raise InvalidArgument(
                    f"model_version: endpoint '{name}' routes to several models "
                    f"({', '.join(sorted(models))}); name one of them to pin a version"
                )
        return None, name, version

    def _resolve(self, table: RouteTable, name: str, version: int | None) -> list[VersionKey]:
        """The versions a name (and version) can answer with now; raises NotFound/..."""
        endpoint, model, pinned = self._target(table, name, version)
        if endpoint is not None:
            route = table.endpoint(endpoint)
            return list(route.keys) if route is not None else []
        assert model is not None
        return [table.resolve_model(model, pinned, None)]

    def _model_versions(self, table: RouteTable, model: str) -> list[str]:
        latest = table.resolve_model(model, None, None).version
        return [str(n) for n in range(1, latest + 1) if table.has_version(VersionKey(model, n))]

    # ------------------------------------------------------------------ health

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        version = parse_version(request.version, "version")
        try:
            keys = self._resolve(self.predictor.table, request.name, version)
        except ModelplaneError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=bool(keys) and self._ready())

    # ---------------------------------------------------------------- metadata

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=__version__, extensions=list(EXTENSIONS)
        )

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        table = self.predictor.table
        name = request.name
        keys = self._resolve(table, name, parse_version(request.version, "version"))
        if not keys:
            route = table.endpoint(name)
            problem = route.problem if route is not None else "no route"
            raise FailedPrecondition(f"endpoint '{name}' has no servable target: {problem}")
        # An endpoint split across versions answers with the signature of its
        # first target: a route's versions are expected to share one signature.
        signature = table.version_info(keys[0]).signature
        if table.endpoint(name) is not None and not request.version:
            versions = sorted({str(key.version) for key in keys}, key=int)
        else:
            versions = self._model_versions(table, keys[0].model)
        return pb.ModelMetadataResponse(
            name=name,
            versions=versions,
            platform=PLATFORM,
            inputs=tensor_metadata(signature.inputs),
            outputs=tensor_metadata(signature.outputs),
        )

    # --------------------------------------------------------------- inference

    async def ModelInfer(  # type: ignore[override]  # answers pre-encoded
        self, request: pb.ModelInferRequest, context: Any
    ) -> bytes:
        """The answer comes back serialized (see PRE_ENCODED_METHODS).

        One coroutine from the request to its answer: each further await on a
        small model's path is a visible part of its cost.
        """
        metadata = _metadata(context)
        telemetry = self._telemetry
        table = self.predictor.table
        observing: AbstractContextManager[PredictObservation | None] = NOT_OBSERVED
        if telemetry is not None:
            # Filed under the endpoint when the name is one, so a request failing
            # before routing still counts against it; a model name is not an endpoint.
            name = request.model_name
            observing = telemetry.observe_predict(metadata, name if table.endpoint(name) else "")
        with observing as observation:
            started = time.perf_counter_ns()
            resolved = False
            model: str | None = None
            version: int | None = None
            try:
                decoded = decode_infer_request(
                    request, self._max_tensor_bytes, self._max_rows, self._max_elements
                )
                endpoint, model, version = self._target(table, decoded.model_name, decoded.version)
                resolved = True
                decoded_at = time.perf_counter_ns()
                prediction = await self.predictor.predict(
                    InferenceRequest(
                        endpoint, model, version, None, decoded.inputs, decoded.output_names
                    ),
                    sticky_key=sticky_key_from_metadata(metadata),
                )
                predicted_at = time.perf_counter_ns()
                response = self._encode(decoded, prediction)
            except Exception:
                blamed, blamed_version = (
                    _blame(table, request.model_name, model, version)
                    if resolved
                    else (request.model_name, 0)
                )
                self.statistics.failed(blamed, blamed_version, time.perf_counter_ns() - started)
                raise
            self._count(decoded, prediction, started, decoded_at, predicted_at)
            if observation is not None:
                observation.answered(
                    prediction.endpoint,
                    prediction.model,
                    prediction.version,
                    prediction.prediction_id,
                    prediction.timeline,
                    prediction.route_reason.value,
                )
            return response

    async def ModelStreamInfer(  # type: ignore[override]  # answers pre-encoded
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse | bytes]:
        """Each request of the stream is answered (and observed) as a ModelInfer."""
        async for request in request_iterator:
            try:
                response = await self.ModelInfer(request, context)
            except ModelplaneError as error:
                # The stream carries on: the failure belongs to this request only.
                yield self._stream_error(request, error.message)
                continue
            except Exception:
                _log.exception("ModelStreamInfer: request %r failed", request.id)
                yield self._stream_error(request, _INTERNAL)
                continue
            yield stream_response(response)

    @staticmethod
    def _stream_error(request: pb.ModelInferRequest, message: str) -> pb.ModelStreamInferResponse:
        return pb.ModelStreamInferResponse(
            error_message=message,
            infer_response=pb.ModelInferResponse(
                model_name=request.model_name, model_version=request.model_version, id=request.id
            ),
        )

    def _count(
        self,
        decoded: OipInferRequest,
        prediction: Prediction,
        started: int,
        decoded_at: int,
        predicted_at: int,
    ) -> None:
        """The answered request's statistics: the wait for the version's runner is
        the queue, the model run the inference; routing and validation count as
        input work, encoding as output."""
        finished = time.perf_counter_ns()
        predicting = predicted_at - decoded_at
        timeline = prediction.timeline
        queue = min(timeline.queue_ns, predicting)
        infer = predicting - queue
        if timeline.infer_ns:
            infer = min(timeline.infer_ns, infer)
        self.statistics.succeeded(
            prediction.model,
            prediction.version,
            _rows(decoded),
            queue,
            decoded_at - started + (predicting - queue - infer),
            infer,
            finished - predicted_at,
        )

    def _encode(self, decoded: OipInferRequest, prediction: Prediction) -> bytes:
        return self._encoder.encode(
            prediction.outputs,
            decoded.model_name,
            prediction.version,
            decoded.request_id,
            (prediction.model, prediction.endpoint),
            prediction.prediction_id,
        )

    # -------------------------------------------------------------- statistics

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        records = self.statistics.versions()
        if request.name:
            table = self.predictor.table
            version = parse_version(request.version, "version")
            try:
                keys = self._resolve(table, request.name, version)
            except NotFound:
                keys = []
            wanted = set(keys)
            if version is None:
                # Every version of the model(s) the name stands for.
                models = {key.model for key in keys} or {request.name}
                records = [r for r in records if r.model in models]
            else:
                records = [r for r in records if VersionKey(r.model, r.version) in wanted]
            if not records:
                if not keys:
                    raise NotFound(f"model '{request.name}' not found")
                # Known but never asked: zeros, as the protocol expects.
                records = [self.statistics.empty(key.model, key.version) for key in keys]
        elif request.version:
            raise NotFound("version: a version needs a model name")
        return pb.ModelStatisticsResponse(model_stats=[self._stats(r) for r in records])

    @staticmethod
    def _stats(record: VersionStats) -> pb.ModelStatistics:
        def duration(d: Duration) -> pb.StatisticDuration:
            return pb.StatisticDuration(count=d.count, ns=d.ns)

        return pb.ModelStatistics(
            name=record.model,
            version=str(record.version) if record.version else "",
            last_inference=record.last_inference_ms,
            inference_count=record.inference_count,
            execution_count=record.execution_count,
            inference_stats=pb.InferStatistics(
                success=duration(record.success),
                fail=duration(record.fail),
                queue=duration(record.queue),
                compute_input=duration(record.compute_input),
                compute_infer=duration(record.compute_infer),
                compute_output=duration(record.compute_output),
                cache_hit=pb.StatisticDuration(),
                cache_miss=pb.StatisticDuration(),
            ),
        )

    # -------------------------------------------------------------- repository

    def _repository_or_raise(self) -> OipRepository:
        if self._repository is None:
            raise NotFound("this server has no model repository")
        return self._repository

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        repository = self._repository_or_raise()
        table = self.predictor.table
        entries = await asyncio.get_running_loop().run_in_executor(
            None, repository.index, table, request.ready
        )
        return pb.RepositoryIndexResponse(
            models=[
                pb.RepositoryIndexResponse.ModelIndex(
                    name=e.name, version=e.version, state=e.state, reason=e.reason
                )
                for e in entries
            ]
        )

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        repository = self._repository_or_raise()
        parameters = _parameters(request.parameters)
        await self._audited(
            context, "RepositoryModelLoad", repository.load, request.model_name, parameters
        )
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        repository = self._repository_or_raise()
        await self._audited(context, "RepositoryModelUnload", repository.unload, request.model_name)
        return pb.RepositoryModelUnloadResponse()

    @staticmethod
    async def _audited(context: Any, rpc: str, function: Callable[..., Any], *args: Any) -> Any:
        """Runs a blocking registry call off the loop as the caller, for the audit trail."""
        metadata = _metadata(context)
        actor = _header(metadata, ACTOR_HEADER) or ANONYMOUS
        reason = _header(metadata, REASON_HEADER) or f"{rpc} (Open Inference Protocol)"

        def call() -> Any:
            # The audit identity is a context variable: set it on the worker thread.
            with acting_as(actor, reason):
                return function(*args)

        return await asyncio.get_running_loop().run_in_executor(None, call)
