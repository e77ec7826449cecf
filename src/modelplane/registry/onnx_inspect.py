"""Read a model's signature by loading it once with onnxruntime.

Loading with the same runtime the replicas use is the check that matters: a
file that parses as ONNX but uses an operator or opset this onnxruntime lacks
is rejected at registration instead of failing later on every replica.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import onnxruntime as ort

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import DataType, Signature, TensorSpec

_ORT_TYPES: dict[str, DataType] = {
    "tensor(bool)": DataType.BOOL,
    "tensor(int8)": DataType.INT8,
    "tensor(int16)": DataType.INT16,
    "tensor(int32)": DataType.INT32,
    "tensor(int64)": DataType.INT64,
    "tensor(uint8)": DataType.UINT8,
    "tensor(uint16)": DataType.UINT16,
    "tensor(uint32)": DataType.UINT32,
    "tensor(uint64)": DataType.UINT64,
    "tensor(float16)": DataType.FLOAT16,
    "tensor(float)": DataType.FLOAT32,
    "tensor(double)": DataType.FLOAT64,
    "tensor(string)": DataType.STRING,
}

_MAX_REASON = 200
_LOAD_PREFIX = re.compile(r"^Load model from .*? failed:\s*")


def _short_reason(error: Exception, path: Path) -> str:
    # onnxruntime's messages start with "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF :",
    # name the server-side file and can run to many lines; the client needs the gist.
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    if "] :" in text:
        text = text.rsplit(" : ", 1)[-1]
    text = _LOAD_PREFIX.sub("", text).replace(str(path), "<artifact>").strip()
    return text[:_MAX_REASON] or type(error).__name__


def _session_options() -> Any:
    options = ort.SessionOptions()
    # One thread each and no spinning: inspection happens on the control plane,
    # which must not steal cores from the replicas.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _spec(node: Any, role: str) -> TensorSpec:
    dtype = _ORT_TYPES.get(node.type)
    if dtype is None:
        raise InvalidArgument(
            f"artifact: {role} {node.name!r} has unsupported type {node.type}; "
            f"expected one of {', '.join(sorted(_ORT_TYPES))}"
        )
    # Symbolic ("batch") and unknown (None) dimensions both mean "any size".
    shape = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in node.shape)
    return TensorSpec(name=node.name, dtype=dtype, shape=shape)


def load_session(model: bytes | Path) -> Any:
    """An onnxruntime session for ``model``; InvalidArgument if it does not load."""
    try:
        return ort.InferenceSession(
            model if isinstance(model, bytes) else str(model),
            sess_options=_session_options(),
            providers=["CPUExecutionProvider"],
        )
    except Exception as error:
        raise InvalidArgument(
            f"artifact is not a loadable ONNX model: {_short_reason(error, Path('<artifact>'))}"
        ) from None


def signature_of(session: Any) -> Signature:
    return Signature(
        inputs=tuple(_spec(node, "input") for node in session.get_inputs()),
        outputs=tuple(_spec(node, "output") for node in session.get_outputs()),
    )


def inspect_onnx(path: Path) -> Signature:
    """The signature of the ONNX model at ``path``; InvalidArgument if it does not load."""
    try:
        session = ort.InferenceSession(
            str(path), sess_options=_session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as error:
        raise InvalidArgument(
            f"artifact is not a loadable ONNX model: {_short_reason(error, path)}"
        ) from None
    return Signature(
        inputs=tuple(_spec(node, "input") for node in session.get_inputs()),
        outputs=tuple(_spec(node, "output") for node in session.get_outputs()),
    )
