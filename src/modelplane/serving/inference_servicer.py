"""``modelplane.v1.InferenceService`` on grpc.aio: decode, call the shared ``Predictor``, encode.

Domain errors propagate: the server's ``AsyncErrorInterceptor`` maps them to a
status, and the telemetry context manager records that status on the way out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np

from modelplane.codec.inference import decode_predict_request, sticky_key_from_metadata
from modelplane.codec.inference_wire import PredictResponseEncoder
from modelplane.domain.timeline import PredictTimeline
from modelplane.serving.predictor import Predictor
from modelplane.v1 import inference_pb2, inference_pb2_grpc

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name
# Methods whose handlers return their answers already serialized (codec/inference_wire.py).
PRE_ENCODED_METHODS = (f"/{SERVICE_NAME}/Predict",)


class PredictObservation(Protocol):
    def answered(
        self,
        endpoint: str,
        model: str,
        version: int,
        prediction_id: str,
        timeline: PredictTimeline | None = None,
        route_reason: str = "",
    ) -> None: ...

    def record_io(
        self,
        inputs: Mapping[str, np.ndarray],
        outputs: Mapping[str, np.ndarray],
        route_reason: str = "",
    ) -> None: ...


# What a request is observed by on a replica without telemetry: nothing.
NOT_OBSERVED: AbstractContextManager[PredictObservation | None] = nullcontext(None)


class PredictTelemetry(Protocol):
    """What the servicer needs of ``modelplane.telemetry.data_plane.DataPlaneTelemetry``."""

    def observe_predict(
        self, metadata: Sequence[tuple[str, str | bytes]], endpoint: str = ""
    ) -> AbstractContextManager[PredictObservation]: ...


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, predictor: Predictor, telemetry: PredictTelemetry | None = None) -> None:
        self.predictor = predictor
        self._telemetry = telemetry
        self._encoder = PredictResponseEncoder()

    async def Predict(  # type: ignore[override]  # answers pre-encoded
        self,
        request: inference_pb2.PredictRequest,
        context: Any,
    ) -> bytes:
        """The answer comes back serialized (see PRE_ENCODED_METHODS). One coroutine
        from the request to its answer, as in the OIP servicer's ModelInfer."""
        telemetry = self._telemetry
        metadata = context.invocation_metadata() or ()
        observing: AbstractContextManager[PredictObservation | None] = NOT_OBSERVED
        if telemetry is not None:
            observing = telemetry.observe_predict(metadata, request.endpoint)
        with observing as observation:
            decoded = decode_predict_request(request)
            p = await self.predictor.predict(
                decoded, sticky_key=sticky_key_from_metadata(metadata)
            )
            if observation is not None:
                # Telemetry hook: names the answer, hands inputs/outputs over for
                # feedback and drift (buffered, shipped off the request path).
                observation.answered(p.endpoint, p.model, p.version, p.prediction_id, p.timeline)
                observation.record_io(decoded.inputs, p.outputs, p.route_reason.value)
            return self._encoder.encode(
                p.outputs, p.endpoint, p.model, p.version, p.prediction_id, p.route_reason
            )
