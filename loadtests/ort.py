"""One onnxruntime session set up the same way for every system under comparison."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session(
    model_path: Path, intra_op_threads: int = 1, inter_op_threads: int = 1
) -> ort.InferenceSession:
    """A CPU session with spinning off: on a 2-core machine a spinning pool steals the
    cycles the gRPC threads need, which costs more than the wake-up latency it saves."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
