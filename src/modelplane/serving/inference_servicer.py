"""``modelplane.v1.InferenceService`` on grpc.aio: decode, call the shared ``Predictor``, encode.

Domain errors propagate: the server's ``AsyncErrorInterceptor`` maps them to a
status, and the telemetry context manager records that status on the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from modelplane.codec.inference import decode_predict_request, encode_predict_response
from modelplane.serving.predictor import Predictor
from modelplane.v1 import inference_pb2, inference_pb2_grpc


class PredictObservation(Protocol):
    def answered(self, endpoint: str, model: str, version: int, prediction_id: str) -> None: ...


class PredictTelemetry(Protocol):
    """What the servicer needs of ``modelplane.telemetry.data_plane.DataPlaneTelemetry``."""

    def observe_predict(
        self, metadata: Sequence[tuple[str, str | bytes]], endpoint: str = ""
    ) -> AbstractContextManager[PredictObservation]: ...


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, predictor: Predictor, telemetry: PredictTelemetry | None = None) -> None:
        self.predictor = predictor
        self._telemetry = telemetry

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
        p = await self.predictor.predict(decode_predict_request(request))
        return encode_predict_response(p.outputs, p.endpoint, p.model, p.version, p.prediction_id)
