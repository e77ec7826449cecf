from __future__ import annotations

from pathlib import Path

import pytest
from onnx import TensorProto, helper

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import DataType, Signature, TensorSpec
from modelplane.registry.onnx_inspect import inspect_onnx
from modelplane.sample_models import linear_model


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return path


def test_reads_the_signature_of_a_real_model(tmp_path: Path) -> None:
    signature = inspect_onnx(_write(tmp_path, linear_model(n_in=8, n_out=3)))
    assert signature == Signature(
        inputs=(TensorSpec("x", DataType.FLOAT32, (-1, 8)),),
        outputs=(TensorSpec("y", DataType.FLOAT32, (-1, 3)),),
    )


def test_symbolic_dimensions_become_minus_one(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.INT64, ["batch", 5])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["batch", 5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    signature = inspect_onnx(_write(tmp_path, model.SerializeToString()))
    assert signature.inputs == (TensorSpec("x", DataType.INT64, (-1, 5)),)
    assert signature.outputs == (TensorSpec("y", DataType.INT64, (-1, 5)),)


def test_garbage_bytes_are_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, b"definitely not a protobuf \x00\xff" * 20)
    with pytest.raises(InvalidArgument, match=r"^artifact is not a loadable ONNX model: ") as info:
        inspect_onnx(path)
    # The server-side path stays on the server.
    assert str(tmp_path) not in info.value.message


def test_truncated_model_is_rejected(tmp_path: Path) -> None:
    data = linear_model()
    with pytest.raises(InvalidArgument, match=r"^artifact is not a loadable ONNX model: "):
        inspect_onnx(_write(tmp_path, data[: len(data) // 2]))


def _identity_model(element_type: int, name: str) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", [name], ["out"])],
        "identity",
        [helper.make_tensor_value_info(name, element_type, [None])],
        [helper.make_tensor_value_info("out", element_type, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_unsupported_element_type_is_rejected_naming_the_tensor(tmp_path: Path) -> None:
    with pytest.raises(
        InvalidArgument, match=r"artifact: input 'half' has unsupported type tensor\(bfloat16\)"
    ):
        inspect_onnx(_write(tmp_path, _identity_model(TensorProto.BFLOAT16, "half")))


def test_string_tensors_are_supported(tmp_path: Path) -> None:
    signature = inspect_onnx(_write(tmp_path, _identity_model(TensorProto.STRING, "text")))
    assert signature.inputs[0].dtype is DataType.STRING
    assert signature.outputs[0].dtype is DataType.STRING
