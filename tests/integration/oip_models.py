"""Small ONNX models with INT64 and string inputs, for the Open Inference Protocol tests."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


def int64_model() -> bytes:
    """``a`` int64 [-1, 3] -> ``scaled`` = a * 3 (int64 [-1, 3]), ``total`` = row sums [-1, 1]."""
    three = helper.make_tensor("three", TensorProto.INT64, [], [3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["a", "three"], ["scaled"]),
            helper.make_node("ReduceSum", ["a", "axes"], ["total"], keepdims=1),
        ],
        "int64_model",
        [helper.make_tensor_value_info("a", TensorProto.INT64, ["batch", 3])],
        [
            helper.make_tensor_value_info("scaled", TensorProto.INT64, ["batch", 3]),
            helper.make_tensor_value_info("total", TensorProto.INT64, ["batch", 1]),
        ],
        initializer=[three, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def string_model() -> bytes:
    """``text`` string [-1] -> ``tagged`` = text + "/ok" (string) and ``label`` (int64)."""
    graph = helper.make_graph(
        [
            helper.make_node("StringConcat", ["text", "suffix"], ["tagged"]),
            helper.make_node(
                "LabelEncoder",
                ["text"],
                ["label"],
                domain="ai.onnx.ml",
                keys_strings=["cat", "dog", "héron"],
                values_int64s=[1, 2, 3],
                default_int64=-1,
            ),
        ],
        "string_model",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [
            helper.make_tensor_value_info("tagged", TensorProto.STRING, ["n"]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
        ],
        initializer=[helper.make_tensor("suffix", TensorProto.STRING, [], [b"/ok"])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("ai.onnx.ml", 3)],
    )
    model.ir_version = 9
    return model.SerializeToString()


def run_onnx(model: bytes, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What onnxruntime computes for ``inputs``: the reference every answer must equal."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))
