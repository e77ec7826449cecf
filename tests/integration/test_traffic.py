"""Traffic management on an in-process replica: sticky, shadow, fallback, rollback, prepare."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from modelplane.codec.tensors import array_to_tensor, tensor_to_array
from modelplane.config import Settings
from modelplane.domain.errors import FailedPrecondition, InvalidArgument, ModelplaneError
from modelplane.domain.models import RouteTarget, ShadowTarget, VersionKey
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.route_prepare import RoutePreparation
from modelplane.registry.use_cases import Registry
from modelplane.routing.shadow import merge_books
from modelplane.sample_models import linear_model, reference_linear
from modelplane.serving.replica import ReplicaRuntime
from modelplane.v1 import inference_pb2, inference_pb2_grpc

pytestmark = pytest.mark.integration

X = np.random.default_rng(7).standard_normal((2, 16)).astype(np.float32)
SEEDS = {1: 11, 2: 22, 3: 33}


@dataclass
class Stack:
    registry: Registry
    runtime: ReplicaRuntime
    stub: inference_pb2_grpc.InferenceServiceStub


def _single_row_only() -> bytes:
    """Valid for one row (what validation runs), fails at run time for more."""
    shape = numpy_helper.from_array(np.array([1, 16], dtype=np.int64), "shape")
    w = numpy_helper.from_array(np.ones((16, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("MatMul", ["r", "w"], ["y"]),
        ],
        "one_row",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        initializer=[shape, w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture()
def stack(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Stack]:
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path, host="127.0.0.1",
        inference_port=0,
    )
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    directory = ReplicaDirectory(store._redis, key_prefix)
    registry = Registry(
        store, ArtifactStore(settings.resolved_artifact_root), replicas=directory,
        route_ack_timeout_s=2.0,
    )
    for number in (1, 2, 3):
        registry.register_version(
            "m", f"v{number}", create_model=True, chunks=[linear_model(seed=SEEDS[number])]
        )
    registry.set_route("fraud", [RouteTarget("m", 100, version=1)], expected_revision=0)
    runtime = ReplicaRuntime(settings, "traffic-replica")
    channel = grpc.insecure_channel(runtime.address)
    try:
        yield Stack(registry, runtime, inference_pb2_grpc.InferenceServiceStub(channel))
    finally:
        channel.close()
        runtime.close()
        store._redis.close()


def _predict(
    stack: Stack, x: np.ndarray = X, key: str | None = None
) -> inference_pb2.PredictResponse:
    request = inference_pb2.PredictRequest(endpoint="fraud", inputs=[array_to_tensor("x", x)])
    metadata = (("x-modelplane-key", key),) if key is not None else None
    response: inference_pb2.PredictResponse = stack.stub.Predict(
        request, metadata=metadata, timeout=5
    )
    return response


def _set(stack: Stack, targets: list[RouteTarget], **policy: object) -> None:
    revision = stack.registry.get_route("fraud").revision
    stack.registry.set_route("fraud", targets, revision, **policy)  # type: ignore[arg-type]


def _error(call: object, *args: object, **kwargs: object) -> ModelplaneError:
    with pytest.raises(ModelplaneError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value


def test_bad_weights_are_invalid_argument_naming_the_target(stack: Stack) -> None:
    cases = [
        ([RouteTarget("m", -1, version=1)], "targets[0].weight: expected >= 0, got -1"),
        (
            [RouteTarget("m", 0, version=1), RouteTarget("m", 0, version=2)],
            "targets[*].weight: expected the weights to sum to more than 0, got 0",
        ),
        (
            [RouteTarget("m", 50, version=1), RouteTarget("m", 50, version=9)],
            "targets[1].version: version 9 of model 'm' not found",
        ),
    ]
    for targets, message in cases:
        error = _error(stack.registry.set_route, "fraud", targets, 1)
        assert isinstance(error, InvalidArgument)
        assert error.message == message
    assert stack.registry.get_route("fraud").revision == 1


def test_sticky_key_keeps_its_version_and_says_why(stack: Stack) -> None:
    _set(stack, [RouteTarget("m", 50, version=1), RouteTarget("m", 50, version=2)])
    seen = {}
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        answers = {_predict(stack, key=user).version for _ in range(5)}
        assert len(answers) == 1, f"{user} moved between versions: {answers}"
        seen[user] = answers.pop()
    response = _predict(stack, key="alice")
    assert response.route_reason == inference_pb2.ROUTE_REASON_STICKY
    assert _predict(stack).route_reason == inference_pb2.ROUTE_REASON_WEIGHT
    # Shift weight towards version 2: users on 2 stay on 2.
    _set(stack, [RouteTarget("m", 10, version=1), RouteTarget("m", 90, version=2)])
    for user, version in seen.items():
        if version == 2:
            assert _predict(stack, key=user).version == 2


def test_sticky_by_named_input(stack: Stack) -> None:
    _set(
        stack,
        [
            RouteTarget("m", 50, version=1, max_batch_size=8, max_wait_us=100),
            RouteTarget("m", 50, version=2),
        ],
        sticky_input="x",
    )
    rows = [np.full((1, 16), i, dtype=np.float32) for i in range(8)]
    for x in rows:
        answers = {_predict(stack, x=x).version for _ in range(4)}
        assert len(answers) == 1
    # The route's batching limits reached the version's runner; the other keeps defaults.
    sessions = stack.runtime.sessions
    first = stack.runtime.predictor.runner(sessions.get(VersionKey("m", 1)))  # type: ignore[arg-type]
    second = stack.runtime.predictor.runner(sessions.get(VersionKey("m", 2)))  # type: ignore[arg-type]
    assert (first.max_batch_size, first.max_wait_us) == (8, 100)
    assert (second.max_batch_size, second.max_wait_us) == (32, 0)
    assert _predict(stack, x=rows[0]).route_reason == inference_pb2.ROUTE_REASON_STICKY
    error = _error(
        stack.registry.set_route, "fraud", [RouteTarget("m", 1, version=1)], 3,
        sticky_input="user",
    )
    assert isinstance(error, InvalidArgument)
    assert error.message == "sticky_input: version 1 of model 'm' (targets[0]) has no input 'user'"


def test_shadow_answers_are_compared_never_returned(stack: Stack) -> None:
    _set(stack, [RouteTarget("m", 100, version=1)], shadows=(ShadowTarget("m", 100.0, version=2),))
    for _ in range(20):
        response = _predict(stack)
        assert (response.version, response.route_reason) == (1, inference_pb2.ROUTE_REASON_WEIGHT)
        np.testing.assert_allclose(
            tensor_to_array(response.outputs[0]), reference_linear(X, seed=SEEDS[1]), rtol=1e-5
        )
    deadline = time.monotonic() + 5
    while True:
        tallies = merge_books(stack.registry.shadow_books(), "fraud")
        if tallies and tallies[0].compared >= 20:
            break
        assert time.monotonic() < deadline, f"shadow stats not reported: {tallies}"
        time.sleep(0.1)
    (tally,) = tallies
    assert (tally.primary, tally.shadow) == (VersionKey("m", 1), VersionKey("m", 2))
    expected_diff = np.abs(reference_linear(X, seed=11) - reference_linear(X, seed=22))
    assert tally.agreed == 0 and tally.errors == 0
    assert tally.mean_abs_diff == pytest.approx(float(expected_diff.mean()), rel=1e-4)
    assert tally.max_abs_diff == pytest.approx(float(expected_diff.max()), rel=1e-4)


def test_incompatible_shadow_is_failed_precondition(stack: Stack) -> None:
    stack.registry.register_version(
        "narrow", "8 inputs", create_model=True, chunks=[linear_model(n_in=8, seed=1)]
    )
    error = _error(
        stack.registry.set_route, "fraud", [RouteTarget("m", 100, version=1)], 1,
        shadows=(ShadowTarget("narrow", 10.0, version=1),),
    )
    assert isinstance(error, FailedPrecondition)
    assert error.message == (
        "shadows[0]: version 1 of model 'narrow' cannot serve the requests of targets[0] "
        "(version 1 of model 'm'): input 'x' is float32 [-1, 16] for the primary, "
        "float32 [-1, 8] for it"
    )
    error = _error(
        stack.registry.set_route, "fraud", [RouteTarget("m", 100, version=1)], 1,
        shadows=(ShadowTarget("m", 0.0, version=2),),
    )
    assert isinstance(error, InvalidArgument)
    assert error.message == "shadows[0].percent: expected a percentage in (0, 100], got 0.0"


def test_fallback_answers_when_the_primary_fails(stack: Stack) -> None:
    stack.registry.register_version(
        "fragile", "one row only", create_model=True, chunks=[_single_row_only()]
    )
    _set(
        stack, [RouteTarget("fragile", 100, version=1)],
        fallback=RouteTarget("m", 0, version=3),
    )
    one = _predict(stack, x=X[:1])
    assert (one.model, one.route_reason) == ("fragile", inference_pb2.ROUTE_REASON_WEIGHT)
    two = _predict(stack, x=X)
    assert (two.model, two.version) == ("m", 3)
    assert two.route_reason == inference_pb2.ROUTE_REASON_FALLBACK
    np.testing.assert_allclose(
        tensor_to_array(two.outputs[0]), reference_linear(X, seed=SEEDS[3]), rtol=1e-5
    )
    # Bad input is the caller's mistake: no fallback, INVALID_ARGUMENT.
    with pytest.raises(grpc.RpcError) as info:
        _predict(stack, x=np.zeros((2, 5), dtype=np.float32))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "input 'x': expected float32 [-1, 16], got float32 [2, 5]"


def test_rollback_restores_the_previous_revision_within_a_second(stack: Stack) -> None:
    _set(stack, [RouteTarget("m", 100, version=2)], shadows=(ShadowTarget("m", 5.0, version=3),))
    assert _predict(stack).version == 2
    _set(stack, [RouteTarget("m", 100, version=3)])
    assert _predict(stack).version == 3
    started = time.monotonic()
    route = stack.registry.rollback_route("fraud")
    while _predict(stack).version != 2:
        assert time.monotonic() - started < 1.0, "the rollback was not served within 1 s"
    assert route.revision == 4
    assert [t.version for t in route.targets] == [2]
    assert route.shadows == (ShadowTarget("m", 5.0, version=3),)
    history = stack.registry.route_history("fraud")
    assert [entry.revision for entry in history] == [1, 2, 3, 4]


def test_replicas_load_and_acknowledge_before_the_route_flips(stack: Stack) -> None:
    directory = stack.registry.replicas
    assert directory is not None
    # The route still serves version 1; version 3 was never needed, so not loaded.
    stack.runtime.sessions.evict_unreferenced({VersionKey("m", 1)})
    assert VersionKey("m", 3) not in stack.runtime.sessions.loaded_keys()
    preparation = RoutePreparation(directory.client, directory.prefix)
    preparation.request([VersionKey("m", 3)])
    assert preparation.wait_loaded(directory, [VersionKey("m", 3)], timeout_s=5) == []
    (status,) = directory.live()
    assert "m:3" in status.loaded
    assert VersionKey("m", 3) in stack.runtime.sessions.loaded_keys()
    # Loaded and acknowledged, but not serving: the route has not changed.
    assert {_predict(stack).version for _ in range(5)} == {1}
