"""An in-process replica on a real Redis serving model ``m`` v1 on two endpoints."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelplane.codec.tensors import array_to_tensor
from modelplane.config import Settings
from modelplane.domain.models import RouteTarget
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model
from modelplane.serving.replica import ReplicaRuntime
from modelplane.v1 import inference_pb2

X = np.ones((2, 16), np.float32)


@dataclass
class ServingPlane:
    settings: Settings
    registry: Registry
    runtime: ReplicaRuntime

    @property
    def address(self) -> str:
        return self.runtime.address


def predict_request(endpoint: str = "open", x: np.ndarray = X) -> inference_pb2.PredictRequest:
    return inference_pb2.PredictRequest(endpoint=endpoint, inputs=[array_to_tensor("x", x)])


def prepare_registry(settings: Settings, endpoints: tuple[str, ...] = ("open", "secure")) -> None:
    """Registers ``m`` v1 and routes ``endpoints`` to it (before any replica starts)."""
    assert settings.redis_url
    store = RedisRegistryStore.from_url(settings.redis_url, settings.key_prefix)
    try:
        registry = Registry(store, ArtifactStore(settings.resolved_artifact_root), replicas=None)
        registry.register_version("m", "v1", create_model=True, chunks=[linear_model(seed=1)])
        for endpoint in endpoints:
            registry.set_route(endpoint, [RouteTarget("m", 100, version=1)], expected_revision=0)
    finally:
        store._redis.close()


@contextlib.contextmanager
def serving_plane(
    redis_url: str, key_prefix: str, tmp_path: Path, **overrides: Any
) -> Iterator[ServingPlane]:
    settings = Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_dir=tmp_path,
        host="127.0.0.1",
        inference_port=0,
        telemetry_enabled=False,
        **overrides,
    )
    prepare_registry(settings)
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    registry = Registry(
        store, ArtifactStore(settings.resolved_artifact_root),
        replicas=ReplicaDirectory(store._redis, key_prefix),
    )
    runtime = ReplicaRuntime(settings, f"replica-{key_prefix}", reuse_port=False)
    try:
        yield ServingPlane(settings, registry, runtime)
    finally:
        runtime.close()
        store._redis.close()
