"""A control plane with the registry, routing, experiment and environment services on port 0."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import redis

from modelplane.client import ModelplaneClient
from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.experiments_servicer import add_experiment_services
from modelplane.control.registry_wiring import add_registry_services
from modelplane.experiments.promotion import Environments
from modelplane.experiments.use_cases import Experiments
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.use_cases import Registry


@dataclass
class LifecyclePlane:
    address: str
    client: ModelplaneClient
    registry: Registry
    experiments: Experiments
    environments: Environments
    artifact_root: Path
    redis: redis.Redis


@contextlib.contextmanager
def lifecycle_plane(redis_url: str, key_prefix: str, root: Path) -> Iterator[LifecyclePlane]:
    artifact_root = root / "artifacts"
    registry = Registry(
        RedisRegistryStore.from_url(redis_url, key_prefix), ArtifactStore(artifact_root)
    )
    raw = redis.Redis.from_url(redis_url)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8), interceptors=[ErrorInterceptor()]
    )
    add_registry_services(server, registry)
    experiments, environments = add_experiment_services(server, registry, raw, key_prefix)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    server.start()
    address = f"127.0.0.1:{port}"
    client = ModelplaneClient(address)
    try:
        yield LifecyclePlane(
            address, client, registry, experiments, environments, artifact_root, raw
        )
    finally:
        client.close()
        server.stop(grace=None)
        raw.close()
