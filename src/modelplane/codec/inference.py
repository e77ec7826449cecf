"""``PredictRequest`` / ``PredictResponse`` <-> the data plane's own request shape."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from modelplane.codec.tensors import array_to_tensor, tensor_to_array
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import RouteReason
from modelplane.v1 import inference_pb2


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """What a prediction asks for, free of protobuf.

    Exactly one of ``endpoint`` and ``model`` is set. With ``model``, at most one
    of ``version`` and ``alias`` is set; neither means the model's latest version.
    """

    endpoint: str | None
    model: str | None
    version: int | None
    alias: str | None
    inputs: dict[str, np.ndarray]
    # Empty means every output of the model.
    output_names: tuple[str, ...]


def decode_predict_request(request: inference_pb2.PredictRequest) -> InferenceRequest:
    inputs: dict[str, np.ndarray] = {}
    for tensor in request.inputs:
        name = tensor.name
        if not name:
            raise InvalidArgument("PredictRequest.inputs: every input needs a name")
        if name in inputs:
            raise InvalidArgument(f"PredictRequest.inputs: input '{name}' is given twice")
        inputs[name] = tensor_to_array(tensor)
    output_names = tuple(request.output_names)

    target = request.WhichOneof("target")
    if target == "endpoint":
        if not request.endpoint:
            raise InvalidArgument("PredictRequest.target.endpoint: an endpoint name is required")
        return InferenceRequest(request.endpoint, None, None, None, inputs, output_names)
    if target == "model":
        ref = request.model
        if not ref.model:
            raise InvalidArgument("PredictRequest.target.model.model: a model name is required")
        which = ref.WhichOneof("ref")
        version = ref.version if which == "version" else None
        alias = ref.alias if which == "alias" else None
        if alias == "":
            raise InvalidArgument("PredictRequest.target.model.alias: an alias name is required")
        return InferenceRequest(None, ref.model, version, alias, inputs, output_names)
    raise InvalidArgument("PredictRequest.target: set endpoint or model")


def encode_predict_response(
    outputs: Mapping[str, np.ndarray],
    endpoint: str,
    model: str,
    version: int,
    prediction_id: str,
    route_reason: RouteReason | None = None,
) -> inference_pb2.PredictResponse:
    return inference_pb2.PredictResponse(
        outputs=[array_to_tensor(name, array) for name, array in outputs.items()],
        endpoint=endpoint,
        model=model,
        version=version,
        prediction_id=prediction_id,
        route_reason=route_reason_to_proto(route_reason),
    )


_REASONS: dict[RouteReason | None, inference_pb2.RouteReason.ValueType] = {
    None: inference_pb2.ROUTE_REASON_UNSPECIFIED,
    RouteReason.WEIGHT: inference_pb2.ROUTE_REASON_WEIGHT,
    RouteReason.STICKY: inference_pb2.ROUTE_REASON_STICKY,
    RouteReason.SHADOW: inference_pb2.ROUTE_REASON_SHADOW,
    RouteReason.FALLBACK: inference_pb2.ROUTE_REASON_FALLBACK,
    RouteReason.PINNED: inference_pb2.ROUTE_REASON_PINNED,
}
_REASONS_BACK = {value: key for key, value in _REASONS.items()}


def route_reason_to_proto(reason: RouteReason | None) -> inference_pb2.RouteReason.ValueType:
    return _REASONS[reason]


def route_reason_from_proto(value: inference_pb2.RouteReason.ValueType) -> RouteReason | None:
    """None for UNSPECIFIED (a server that predates reasons)."""
    return _REASONS_BACK.get(value)


STICKY_KEY_METADATA = "x-modelplane-key"


def sticky_key_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> bytes | None:
    """The request key for sticky assignment, from gRPC metadata; None when absent or empty."""
    for name, value in metadata:
        if name == STICKY_KEY_METADATA:
            key = value.encode() if isinstance(value, str) else bytes(value)
            return key or None
    return None
