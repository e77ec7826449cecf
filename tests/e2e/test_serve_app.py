"""The data plane deployed as a real Ray Serve application, answering on its own port."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelplane.codec.tensors import array_to_tensor, tensor_to_array
from modelplane.config import Settings
from modelplane.domain.models import RouteTarget
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.embedded_redis import free_port
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model, reference_linear
from modelplane.serving.app import deploy_data_plane, shutdown_data_plane
from modelplane.serving.grpc_server import health_status
from modelplane.v1 import inference_pb2, inference_pb2_grpc

pytestmark = pytest.mark.e2e

# Its own app name, so it never touches a data plane another test module deployed.
APP = "data-plane-under-test"
X = np.random.default_rng(9).standard_normal((4, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def deployed(
    ray_local: None, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Registry]]:
    data_dir: Path = tmp_path_factory.mktemp("serve_app")
    settings = Settings(
        redis_url=redis_url,
        key_prefix="serveapp",
        data_dir=data_dir,
        host="127.0.0.1",
        # SO_REUSEPORT across replicas needs one fixed port: port 0 would give
        # each replica its own.
        inference_port=free_port("127.0.0.1"),
        control_port=0,  # no control plane here, so no telemetry export
        replicas=2,
        replica_num_cpus=0.25,
    )
    store = RedisRegistryStore.from_url(redis_url, settings.key_prefix)
    registry = Registry(
        store,
        ArtifactStore(settings.resolved_artifact_root),
        replicas=ReplicaDirectory(store._redis, settings.key_prefix),
        route_ack_timeout_s=10.0,
    )
    registry.register_version("m", "v1", create_model=True, chunks=[linear_model(seed=1)])
    registry.register_version("m", "v2", create_model=False, chunks=[linear_model(seed=2)])
    registry.set_route("e", [RouteTarget("m", 100, version=1)], expected_revision=0)
    deploy_data_plane(settings, app_name=APP)
    try:
        yield settings, registry
    finally:
        shutdown_data_plane(app_name=APP)
        store._redis.close()


def _predict(stub: inference_pb2_grpc.InferenceServiceStub) -> inference_pb2.PredictResponse:
    request = inference_pb2.PredictRequest(endpoint="e", inputs=[array_to_tensor("x", X)])
    return stub.Predict(request, timeout=10)


def test_replicas_serve_on_one_shared_port(deployed: tuple[Settings, Registry]) -> None:
    settings, registry = deployed
    assert health_status(settings.inference_address) == "SERVING"

    live = registry.replicas.live()  # type: ignore[union-attr]
    assert len(live) == 2
    assert {status.address for status in live} == {settings.inference_address}
    assert all("m:1" in status.loaded for status in live)

    with grpc.insecure_channel(settings.inference_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        response = _predict(stub)
        assert (response.endpoint, response.model, response.version) == ("e", "m", 1)
        np.testing.assert_allclose(
            tensor_to_array(response.outputs[0]), reference_linear(X, seed=1), rtol=1e-5, atol=1e-5
        )

        # set_route returns once every live replica reports the new generation.
        started = time.monotonic()
        revision = registry.get_route("e").revision
        registry.set_route("e", [RouteTarget("m", 100, version=2)], revision)
        while _predict(stub).version != 2:
            assert time.monotonic() - started < 5, "the replicas did not switch to version 2"
            time.sleep(0.02)
        generation = registry.store.current_generation()
        assert all(s.generation == generation for s in registry.replicas.live())  # type: ignore[union-attr]

        bad = inference_pb2.PredictRequest(
            endpoint="e", inputs=[array_to_tensor("x", X.astype(np.int64))]
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(bad, timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "input 'x': expected float32 [-1, 16], got int64 [4, 16]"
