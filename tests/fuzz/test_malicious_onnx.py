"""A corpus of hostile ONNX files: each is refused, none becomes servable, nothing
they point at is read, and the registry keeps working."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelplane.domain.errors import ModelplaneError
from modelplane.domain.models import VersionStatus
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.sandbox import Limits, Sandbox
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model

pytestmark = pytest.mark.integration


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
           inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]) -> bytes:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])


def external_data_escape(secret: Path) -> bytes:
    weight = numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", f"../../../../../../..{secret}"), ("length", "64")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [weight], [X], [Y])


def absolute_external_data(secret: Path) -> bytes:
    return external_data_escape(secret).replace(b"../../../../../../..", b"")


def enormous_initializer() -> bytes:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**20, 2**20])
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [weight], [X], [Y])


def enormous_allocation_at_run_time() -> bytes:
    shape = numpy_helper.from_array(np.array([2**18, 2**18], np.int64), "s")
    nodes = [
        helper.make_node("ConstantOfShape", ["s"], ["big"]),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "total"], ["y"]),
    ]
    return _model(nodes, [shape], [X], [Y])


def dangling_input() -> bytes:
    return _model([helper.make_node("Add", ["x", "ghost"], ["y"])], [], [X], [Y])


def cycle() -> bytes:
    nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Identity", ["a"], ["y"])]
    return _model(nodes, [], [X], [Y])


def unknown_operator() -> bytes:
    return _model([helper.make_node("SystemExec", ["x"], ["y"], domain="evil.ops")], [], [X], [Y])


def truncated() -> bytes:
    return linear_model()[: len(linear_model()) // 2]


CORPUS: dict[str, Callable[[Path], bytes]] = {
    "external-data-escape": external_data_escape,
    "absolute-external-data": absolute_external_data,
    "enormous-initializer": lambda _: enormous_initializer(),
    "enormous-allocation-at-run-time": lambda _: enormous_allocation_at_run_time(),
    "dangling-input": lambda _: dangling_input(),
    "cycle": lambda _: cycle(),
    "unknown-operator": lambda _: unknown_operator(),
    "truncated": lambda _: truncated(),
    "random-bytes": lambda _: os.urandom(4096),
    "empty": lambda _: b"",
}


@pytest.fixture()
def registry(redis_url: str, tmp_path: Path) -> Iterator[Registry]:
    store = RedisRegistryStore.from_url(redis_url, f"onnx{uuid.uuid4().hex[:8]}")
    yield Registry(
        store,
        ArtifactStore(tmp_path / "artifacts"),
        replicas=None,
        sandbox=Sandbox(Limits(timeout_s=30, memory_bytes=512 * 1024**2)),
    )
    store._redis.close()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_a_hostile_model_is_refused_and_never_served(
    registry: Registry, tmp_path: Path, name: str
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"S" * 64)
    payload = CORPUS[name](secret)
    try:
        version = registry.register_version("hostile", name, create_model=True, chunks=[payload])
    except ModelplaneError as refused:
        assert refused.code.name in {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}, refused
    else:
        assert version.status is VersionStatus.FAILED, (name, version.status)
        assert version.status_reason
    assert not any(v.status is VersionStatus.READY for v in _versions(registry))


def _versions(registry: Registry) -> list[object]:
    try:
        return list(registry.list_versions("hostile"))
    except ModelplaneError:
        return []
