"""``PredictRequest`` / ``PredictResponse`` <-> the data plane's own request shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from modelplane.codec.tensors import array_to_tensor, tensor_to_array
from modelplane.domain.errors import InvalidArgument
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
) -> inference_pb2.PredictResponse:
    return inference_pb2.PredictResponse(
        outputs=[array_to_tensor(name, array) for name, array in outputs.items()],
        endpoint=endpoint,
        model=model,
        version=version,
        prediction_id=prediction_id,
    )
