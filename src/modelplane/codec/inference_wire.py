"""Predict answers written straight to protobuf wire bytes.

The same reasoning as codec/oip_wire.py: building a ``PredictResponse`` and its
output ``Tensor`` messages, then serialising them, was a sixth of the replica's
own per-request work on a small model, and most of it repeats between answers
of one version. The parts that do not change (who answered and why; each
output's name, dtype and shape) are encoded once and cached; a request adds
its prediction id and the output bytes. Tests parse the bytes with the
generated classes and compare them with ``encode_predict_response``.

Layout (inference.proto, tensor.proto):

    PredictResponse: 1 outputs (Tensor), 2 endpoint, 3 model, 4 version (int64),
                     5 prediction_id, 6 route_reason (enum)
    Tensor:          1 name, 2 dtype (enum), 3 shape (packed int64), 4 data
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modelplane.codec.inference import route_reason_to_proto
from modelplane.codec.tensors import tensor_payload
from modelplane.codec.wire import LEN, VARINT, EncodedParts, packed, tag, text, varint
from modelplane.domain.models import RouteReason

_OUTPUTS = tag(1, LEN)
_ENDPOINT = tag(2, LEN)
_MODEL = tag(3, LEN)
_VERSION = tag(4, VARINT)
_PREDICTION_ID = tag(5, LEN)
_ROUTE_REASON = tag(6, VARINT)
_TENSOR_NAME = tag(1, LEN)
_TENSOR_DTYPE = tag(2, VARINT)
_TENSOR_SHAPE = tag(3, LEN)
_TENSOR_DATA = tag(4, LEN)


def _number(field_tag: bytes, value: int) -> bytes:
    # Non-negative here (versions, enum values); 0 is the default, left off.
    return field_tag + varint(value) if value else b""


def _head(endpoint: str, model: str, version: int, reason: RouteReason | None) -> bytes:
    """Who answered and why: the same for every answer of one version and route reason."""
    return (
        text(_ENDPOINT, endpoint)
        + text(_MODEL, model)
        + _number(_VERSION, version)
        + _number(_ROUTE_REASON, route_reason_to_proto(reason))
    )


def _tensor_head(name: str, dtype: int, shape: tuple[int, ...]) -> bytes:
    """A tensor's fields before its data."""
    return text(_TENSOR_NAME, name) + _number(_TENSOR_DTYPE, dtype) + packed(_TENSOR_SHAPE, shape)


class PredictResponseEncoder:
    """Writes Predict answers; one per servicer, used from its event loop only."""

    def __init__(self) -> None:
        self._heads: EncodedParts[tuple[str, str, int, RouteReason | None]]
        self._heads = EncodedParts(_head)
        self._tensor_heads: EncodedParts[tuple[str, int, tuple[int, ...]]]
        self._tensor_heads = EncodedParts(_tensor_head)

    def encode(
        self,
        outputs: Mapping[str, np.ndarray],
        endpoint: str,
        model: str,
        version: int,
        prediction_id: str,
        route_reason: RouteReason | None = None,
    ) -> bytes:
        """The serialized PredictResponse."""
        parts: list[bytes] = []
        for name, array in outputs.items():
            dtype, data = tensor_payload(name, array)
            head = self._tensor_heads[(name, dtype, array.shape)]
            # The data is joined once, at the end: its length is known without a copy.
            data_length = varint(len(data)) if data else b""
            size = len(head) + (len(_TENSOR_DATA) + len(data_length) + len(data) if data else 0)
            parts += (_OUTPUTS, varint(size), head)
            if data:
                parts += (_TENSOR_DATA, data_length, data)
        parts.append(self._heads[(endpoint, model, version, route_reason)])
        parts.append(text(_PREDICTION_ID, prediction_id))
        return b"".join(parts)
