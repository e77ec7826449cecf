"""Predict answers written to wire bytes parse to what encode_predict_response builds."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelplane.codec.inference import encode_predict_response
from modelplane.codec.inference_wire import PredictResponseEncoder
from modelplane.codec.tensors import tensor_to_array
from modelplane.codec.wire import EncodedParts
from modelplane.domain.models import RouteReason
from modelplane.v1 import inference_pb2

_DTYPES = st.sampled_from(
    [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64,
     np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]
)
_ARRAYS = _DTYPES.flatmap(
    lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                     max_side=20))
)
_TEXT = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    outputs=st.dictionaries(st.text(min_size=1, max_size=12), _ARRAYS, max_size=3),
    endpoint=_TEXT,
    model=_TEXT,
    version=st.integers(min_value=0, max_value=2**40),
    prediction_id=_TEXT,
    reason=st.sampled_from([None, *RouteReason]),
)
def test_encoded_answers_parse_to_the_message_the_codec_builds(
    outputs: dict[str, np.ndarray],
    endpoint: str,
    model: str,
    version: int,
    prediction_id: str,
    reason: RouteReason | None,
) -> None:
    encoder = PredictResponseEncoder()
    expected = encode_predict_response(outputs, endpoint, model, version, prediction_id, reason)
    # Twice: the second answer comes from the caches and must be the same.
    for _ in range(2):
        wire = encoder.encode(outputs, endpoint, model, version, prediction_id, reason)
        assert inference_pb2.PredictResponse.FromString(wire) == expected
        # Byte for byte too: field order and defaults follow the reference encoder.
        assert len(wire) == expected.ByteSize()


def test_string_outputs_and_empty_tensors_round_trip() -> None:
    outputs = {
        "label": np.array(["fraud", "ok", ""], dtype=object),
        "none": np.zeros((0, 4), dtype=np.float32),
        "y": np.arange(300, dtype=np.int64).reshape(3, 100),
    }
    wire = PredictResponseEncoder().encode(outputs, "ep", "m", 7, "p-1", RouteReason.STICKY)
    parsed = inference_pb2.PredictResponse.FromString(wire)
    assert (parsed.endpoint, parsed.model, parsed.version, parsed.prediction_id) == (
        "ep", "m", 7, "p-1"
    )
    assert parsed.route_reason == inference_pb2.ROUTE_REASON_STICKY
    back = {tensor.name: tensor_to_array(tensor) for tensor in parsed.outputs}
    assert back["label"].tolist() == ["fraud", "ok", ""]
    assert back["none"].shape == (0, 4)
    np.testing.assert_array_equal(back["y"], outputs["y"])


def test_encoded_parts_are_built_once_and_bounded() -> None:
    built: list[tuple[str, int]] = []

    def build(name: str, number: int) -> bytes:
        built.append((name, number))
        return f"{name}{number}".encode()

    parts: EncodedParts[tuple[str, int]] = EncodedParts(build, limit=2)
    assert parts[("a", 1)] == b"a1"
    assert parts[("a", 1)] == b"a1"
    assert parts[("b", 2)] == b"b2"
    assert built == [("a", 1), ("b", 2)]
    assert parts[("c", 3)] == b"c3"  # past the limit: starts again
    assert set(parts) == {("c", 3)}
