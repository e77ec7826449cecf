"""A ReplicaRuntime in-process (no Ray) against a real Redis, registry and gRPC."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelplane.codec.tensors import array_to_tensor, tensor_to_array
from modelplane.config import Settings
from modelplane.domain.models import RouteTarget
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model, reference_linear
from modelplane.serving.grpc_server import health_status
from modelplane.serving.replica import ReplicaRuntime
from modelplane.v1 import inference_pb2, inference_pb2_grpc

pytestmark = pytest.mark.integration

X = np.random.default_rng(5).standard_normal((2, 16)).astype(np.float32)
# Version n of model "m" is linear_model(seed=SEEDS[n]).
SEEDS = {1: 11, 2: 22, 3: 33}


@dataclass
class Stack:
    registry: Registry
    runtime: ReplicaRuntime
    stub: inference_pb2_grpc.InferenceServiceStub
    artifacts: ArtifactStore


@pytest.fixture()
def stack(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Stack]:
    settings = Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_dir=tmp_path,
        host="127.0.0.1",
        inference_port=0,
    )
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    artifacts = ArtifactStore(settings.resolved_artifact_root)
    directory = ReplicaDirectory(store._redis, key_prefix)
    registry = Registry(store, artifacts, replicas=directory, route_ack_timeout_s=2.0)
    for number in (1, 2, 3):
        version = registry.register_version(
            "m", f"v{number}", create_model=True, chunks=[linear_model(seed=SEEDS[number])]
        )
        assert version.version == number
    registry.set_route("fraud", [RouteTarget("m", 100, version=1)], expected_revision=0)

    runtime = ReplicaRuntime(settings, "replica-under-test")
    channel = grpc.insecure_channel(runtime.address)
    try:
        yield Stack(registry, runtime, inference_pb2_grpc.InferenceServiceStub(channel), artifacts)
    finally:
        channel.close()
        runtime.close()
        store._redis.close()


def _request(endpoint: str = "fraud", x: np.ndarray = X) -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(endpoint=endpoint, inputs=[array_to_tensor("x", x)])


def _check_answer(response: inference_pb2.PredictResponse) -> None:
    """The outputs are what the version the response names computes."""
    (output,) = response.outputs
    assert output.name == "y"
    expected = reference_linear(X, seed=SEEDS[response.version])
    np.testing.assert_allclose(tensor_to_array(output), expected, rtol=1e-5, atol=1e-5)


def _route_to(registry: Registry, version: int) -> None:
    revision = registry.get_route("fraud").revision
    registry.set_route("fraud", [RouteTarget("m", 100, version=version)], revision)


def test_predict_then_switch_route(stack: Stack) -> None:
    assert health_status(stack.runtime.address) == "SERVING"
    assert health_status(stack.runtime.address, "modelplane.v1.InferenceService") == "SERVING"

    first = stack.stub.Predict(_request(), timeout=5)
    assert (first.endpoint, first.model, first.version) == ("fraud", "m", 1)
    assert len(first.prediction_id) == 32
    _check_answer(first)
    second = stack.stub.Predict(_request(), timeout=5)
    assert second.prediction_id != first.prediction_id

    started = time.monotonic()
    _route_to(stack.registry, 2)
    while stack.stub.Predict(_request(), timeout=5).version != 2:
        assert time.monotonic() - started < 1.0, "the new route did not answer within 1 s"
        time.sleep(0.01)
    _check_answer(stack.stub.Predict(_request(), timeout=5))

    # The replica reported the generation it serves, with what it has loaded.
    (status,) = stack.registry.replicas.live()  # type: ignore[union-attr]
    assert status.replica_id == "replica-under-test"
    assert status.generation == stack.registry.store.snapshot().generation
    assert "m:2" in status.loaded
    assert status.address == stack.runtime.address


def test_in_flight_requests_never_fail_during_swaps(stack: Stack) -> None:
    errors: list[BaseException] = []
    versions: list[int] = []
    stop = threading.Event()

    def fire() -> None:
        deadline = time.monotonic() + 30  # bounded even if the main thread dies
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                response = stack.stub.Predict(_request(), timeout=5)
                _check_answer(response)
                versions.append(response.version)
            except BaseException as error:
                errors.append(error)
                return

    threads = [threading.Thread(target=fire) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for flip in range(8):
            _route_to(stack.registry, 2 if flip % 2 == 0 else 1)
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(versions) > 20
    assert set(versions) == {1, 2}


def test_split_route_sends_traffic_to_both(stack: Stack) -> None:
    revision = stack.registry.get_route("fraud").revision
    stack.registry.set_route(
        "fraud", [RouteTarget("m", 50, version=1), RouteTarget("m", 50, version=2)], revision
    )
    seen = {stack.stub.Predict(_request(), timeout=5).version for _ in range(60)}
    assert seen == {1, 2}


def test_direct_model_requests_load_lazily(stack: Stack) -> None:
    assert "m:3" not in {str(key) for key in stack.runtime.sessions.loaded_keys()}
    by_version = inference_pb2.PredictRequest(
        model=inference_pb2.ModelRef(model="m", version=3), inputs=[array_to_tensor("x", X)]
    )
    response = stack.stub.Predict(by_version, timeout=10)
    assert (response.endpoint, response.model, response.version) == ("", "m", 3)
    _check_answer(response)

    stack.registry.set_alias("m", "prod", 2)
    by_alias = inference_pb2.PredictRequest(
        model=inference_pb2.ModelRef(model="m", alias="prod"), inputs=[array_to_tensor("x", X)]
    )
    assert stack.stub.Predict(by_alias, timeout=10).version == 2
    latest = inference_pb2.PredictRequest(
        model=inference_pb2.ModelRef(model="m"), inputs=[array_to_tensor("x", X)]
    )
    assert stack.stub.Predict(latest, timeout=10).version == 3


def _error(stub: inference_pb2_grpc.InferenceServiceStub, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(request, timeout=5)
    return caught.value


def test_wrong_dtype_is_invalid_argument(stack: Stack) -> None:
    error = _error(stack.stub, _request(x=X.astype(np.float64)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "input 'x': expected float32 [-1, 16], got float64 [2, 16]"


def test_wrong_shape_is_invalid_argument(stack: Stack) -> None:
    error = _error(stack.stub, _request(x=np.zeros((2, 8), dtype=np.float32)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "input 'x': expected float32 [-1, 16], got float32 [2, 8]"


def test_truncated_tensor_is_invalid_argument(stack: Stack) -> None:
    request = _request()
    request.inputs[0].data = request.inputs[0].data[:-4]
    error = _error(stack.stub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "input 'x': data has 124 bytes, shape [2, 16] of float32 needs 128"


def test_unknown_endpoint_is_not_found(stack: Stack) -> None:
    error = _error(stack.stub, _request(endpoint="nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "endpoint 'nope' not found"


def test_unknown_version_is_not_found(stack: Stack) -> None:
    request = inference_pb2.PredictRequest(
        model=inference_pb2.ModelRef(model="m", version=9), inputs=[array_to_tensor("x", X)]
    )
    error = _error(stack.stub, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "version 9 of model 'm' not found"


def test_missing_target_is_invalid_argument(stack: Stack) -> None:
    error = _error(stack.stub, inference_pb2.PredictRequest(inputs=[array_to_tensor("x", X)]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "PredictRequest.target: set endpoint or model"


def test_unloadable_version_keeps_the_old_route(stack: Stack) -> None:
    # Corrupt version 3's artifact: the replica cannot load it, so routing the
    # endpoint to it must leave the endpoint on version 1, still answering.
    sha = stack.registry.get_version("m", 3).sha256
    path = stack.artifacts.path_for(sha)
    path.chmod(0o644)
    path.write_bytes(b"not the bytes that were registered")
    before = stack.runtime.live_generation

    _route_to(stack.registry, 3)
    assert stack.runtime.table.generation > before  # the new snapshot was seen...
    assert stack.runtime.live_generation == before  # ...but not reported as live
    for _ in range(5):
        response = stack.stub.Predict(_request(), timeout=5)
        assert response.version == 1
        _check_answer(response)

    # Another endpoint routed to the corrupt version reports the real cause.
    stack.registry.set_route("other", [RouteTarget("m", 100, version=3)], expected_revision=0)
    error = _error(stack.stub, _request(endpoint="other"))
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert f"artifact {sha} is corrupt" in error.details()
