"""ModelInfer answers written straight to protobuf wire bytes.

Building a ``ModelInferResponse`` message field by field and serialising it cost
the replica's event loop about a third of its own per-request work on a small
model: every string, output tensor and parameter entry is a Python-to-upb call,
and the parts that never change between two answers of one version (model name,
version, model and endpoint parameters, each output's name, datatype and shape)
were rebuilt every time. Here those parts are encoded once and cached; a request
adds only its id, its prediction id and the output bytes.

Tests parse the bytes with the protocol's own message classes and compare them
with the same answer built field by field. Layout (grpc_service.proto):

    ModelInferResponse: 1 model_name, 2 model_version, 3 id,
                        4 parameters (map<string, InferParameter>),
                        5 outputs (InferOutputTensor: 1 name, 2 datatype, 3 shape),
                        6 raw_output_contents
    InferParameter:     3 string_param
    ModelStreamInferResponse: 2 infer_response
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelplane.codec.oip import encode_output
from modelplane.codec.wire import LEN, EncodedParts, field, packed, tag, text, varint

_MODEL_NAME = tag(1, LEN)
_MODEL_VERSION = tag(2, LEN)
_ID = tag(3, LEN)
_PARAMETERS = tag(4, LEN)
_OUTPUTS = tag(5, LEN)
_RAW_OUTPUT = tag(6, LEN)
_MAP_KEY = tag(1, LEN)
_MAP_VALUE = tag(2, LEN)
_STRING_PARAM = tag(3, LEN)
_TENSOR_NAME = tag(1, LEN)
_TENSOR_DATATYPE = tag(2, LEN)
_TENSOR_SHAPE = tag(3, LEN)
_STREAM_INFER_RESPONSE = tag(2, LEN)


def _string_parameter(key: str, value: str) -> bytes:
    """One ``parameters`` map entry holding a string (a set oneof is always written)."""
    entry = field(_MAP_KEY, key.encode()) + field(_MAP_VALUE, field(_STRING_PARAM, value.encode()))
    return field(_PARAMETERS, entry)


def _output(name: str, datatype: str, shape: tuple[int, ...]) -> bytes:
    """An output tensor's metadata (its bytes travel in raw_output_contents)."""
    tensor = (
        text(_TENSOR_NAME, name)
        + text(_TENSOR_DATATYPE, datatype)
        + packed(_TENSOR_SHAPE, shape)
    )
    return field(_OUTPUTS, tensor)


class InferResponseEncoder:
    """Writes ModelInfer answers; one per servicer, used from its event loop only."""

    def __init__(self, prediction_id_key: str, constant_keys: tuple[str, ...]) -> None:
        """``constant_keys``: the string parameters that are the same for every answer
        of one (model, endpoint), in the order ``encode`` receives their values."""
        self._prediction_id_key = prediction_id_key
        self._constant_keys = constant_keys
        self._heads: EncodedParts[tuple[str, int, tuple[str, ...]]] = EncodedParts(self._head)
        self._outputs: EncodedParts[tuple[str, str, tuple[int, ...]]] = EncodedParts(_output)

    def _head(self, model_name: str, version: int, constants: tuple[str, ...]) -> bytes:
        return b"".join(
            [
                text(_MODEL_NAME, model_name),
                text(_MODEL_VERSION, str(version)),
                *(
                    _string_parameter(name, value)
                    for name, value in zip(self._constant_keys, constants, strict=True)
                ),
            ]
        )

    def encode(
        self,
        outputs: Mapping[str, np.ndarray],
        model_name: str,
        version: int,
        request_id: str,
        constants: tuple[str, ...],
        prediction_id: str,
    ) -> bytes:
        """The serialized ModelInferResponse: every output's metadata, then its raw bytes."""
        parts = [self._heads[(model_name, version, constants)]]
        if request_id:
            parts.append(field(_ID, request_id.encode()))
        if prediction_id:
            parts.append(_string_parameter(self._prediction_id_key, prediction_id))
        raws = []
        for name, array in outputs.items():
            datatype, data = encode_output(name, array)
            parts.append(self._outputs[(name, datatype, array.shape)])
            raws.append(_RAW_OUTPUT + varint(len(data)))
            raws.append(data)
        parts.extend(raws)
        return b"".join(parts)


def stream_response(infer_response: bytes) -> bytes:
    """A ModelStreamInferResponse carrying one encoded answer."""
    return field(_STREAM_INFER_RESPONSE, infer_response)
