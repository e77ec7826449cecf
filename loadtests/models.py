"""The benchmark models, all built locally (no downloads).

- ``tiny``: ``linear_model`` 16 -> 4, where serving overhead is everything;
- ``mlp``: 4 dense layers of 1024, compute-heavy and worth batching;
- ``large``: a >= 50 MB network, to measure registration, loading and hot swap.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelplane.sample_models import linear_model, mlp_model

_OPSET = 17
_IR_VERSION = 8


@dataclass(frozen=True)
class BenchModel:
    name: str
    input_name: str
    input_width: int

    def build(self) -> bytes:
        return BUILDERS[self.name]()

    def sample_input(self, batch: int = 1, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((batch, self.input_width)).astype(np.float32)


def large_model(
    n_in: int = 64, hidden: int = 4096, bottleneck: int = 3200, n_out: int = 16, seed: int = 1
) -> bytes:
    """``n_in -> hidden -> bottleneck -> n_out`` with ReLU; ~13.4 M float32 weights (~54 MB)
    by default, so it is well past the 50 MB where artifact streaming and load time show."""
    rng = np.random.default_rng(seed)
    widths = [n_in, hidden, bottleneck, n_out]
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    current = "x"
    for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
        weight = (rng.standard_normal((w_in, w_out)) / np.sqrt(w_in)).astype(np.float32)
        initializers.append(numpy_helper.from_array(weight, f"W{i}"))
        last = i == len(widths) - 2
        nodes.append(helper.make_node("MatMul", [current, f"W{i}"], ["y" if last else f"m{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"m{i}"], [f"h{i}"]))
            current = f"h{i}"
    graph = helper.make_graph(
        nodes,
        f"large_{hidden}x{bottleneck}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n_out])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, producer_name="modelplane-bench", opset_imports=[helper.make_opsetid("", _OPSET)]
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


BUILDERS: dict[str, Callable[[], bytes]] = {
    "tiny": lambda: linear_model(16, 4),
    "mlp": lambda: mlp_model(1024, 1024, 4),
    "large": large_model,
}

MODELS = {
    "tiny": BenchModel("tiny", "x", 16),
    "mlp": BenchModel("mlp", "x", 1024),
    "large": BenchModel("large", "x", 64),
}


def write_model(name: str, directory: Path) -> Path:
    """Build model ``name`` into ``directory/<name>.onnx`` (reused if already there)."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.onnx"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(MODELS[name].build())
        tmp.replace(path)
    return path
