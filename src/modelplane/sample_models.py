"""Small ONNX models built locally with the onnx package: no downloads.

Used by the demo, the tests and the benchmarks. Every model has a dynamic first
(batch) dimension so requests can be batched.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Opset and IR version every onnxruntime release since 1.16 loads.
_OPSET = 17
_IR_VERSION = 8


def linear_model(n_in: int = 16, n_out: int = 4, seed: int = 1) -> bytes:
    """``y = x @ W + b`` with float32 input ``x[-1, n_in]`` and output ``y[-1, n_out]``."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((n_in, n_out)).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        f"linear_{n_in}x{n_out}_seed{seed}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n_out])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    return _serialize(graph)


def mlp_model(n_in: int = 1024, hidden: int = 1024, layers: int = 4, seed: int = 1) -> bytes:
    """A compute-heavy MLP: ``layers`` dense layers of ``hidden`` units with ReLU between."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    current, width = "x", n_in
    for i in range(layers):
        w = (rng.standard_normal((width, hidden)) / np.sqrt(width)).astype(np.float32)
        b = np.zeros(hidden, dtype=np.float32)
        initializers += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [f"mm{i}"]))
        out = "y" if i == layers - 1 else f"h{i}"
        if i == layers - 1:
            nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [out]))
        else:
            nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"a{i}"]))
            nodes.append(helper.make_node("Relu", [f"a{i}"], [out]))
        current, width = out, hidden
    graph = helper.make_graph(
        nodes,
        f"mlp_{layers}x{hidden}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, hidden])],
        initializer=initializers,
    )
    return _serialize(graph)


def reference_linear(x: np.ndarray, n_in: int = 16, n_out: int = 4, seed: int = 1) -> np.ndarray:
    """What :func:`linear_model` computes, in numpy, to check answers independently."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((n_in, n_out)).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32)
    return np.asarray(x @ weight + bias, dtype=np.float32)


def _serialize(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(
        graph,
        producer_name="modelplane",
        opset_imports=[helper.make_opsetid("", _OPSET)],
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()
