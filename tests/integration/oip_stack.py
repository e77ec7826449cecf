"""A replica (in-process) serving the Open Inference Protocol tests' models, on a real Redis."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from modelplane.config import Settings
from modelplane.domain.models import RouteTarget
from modelplane.oip import grpc_service_pb2_grpc as pb_grpc
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model
from modelplane.serving.inference_servicer import PredictTelemetry
from modelplane.serving.replica import ReplicaRuntime
from tests.integration.oip_models import int64_model, string_model

# Version n of model "m" is linear_model(seed=SEEDS[n]); endpoint "fraud" routes to m:1.
SEEDS = {1: 11, 2: 22}


@dataclass
class Stack:
    registry: Registry
    runtime: ReplicaRuntime
    stub: pb_grpc.GRPCInferenceServiceStub
    channel: grpc.Channel


@contextlib.contextmanager
def oip_stack(
    redis_url: str, key_prefix: str, tmp_path: Path, telemetry: PredictTelemetry | None = None
) -> Iterator[Stack]:
    settings = Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_dir=tmp_path,
        host="127.0.0.1",
        inference_port=0,
    )
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    directory = ReplicaDirectory(store._redis, key_prefix)
    registry = Registry(
        store,
        ArtifactStore(settings.resolved_artifact_root),
        replicas=directory,
        route_ack_timeout_s=5.0,
    )
    for number in (1, 2):
        registry.register_version(
            "m", f"v{number}", create_model=True, chunks=[linear_model(seed=SEEDS[number])]
        )
    registry.register_version("ints", "", create_model=True, chunks=[int64_model()])
    registry.register_version("words", "", create_model=True, chunks=[string_model()])
    registry.set_route("fraud", [RouteTarget("m", 100, version=1)], expected_revision=0)
    runtime = ReplicaRuntime(settings, "oip-replica", telemetry=telemetry)
    channel = grpc.insecure_channel(runtime.address)
    try:
        yield Stack(registry, runtime, pb_grpc.GRPCInferenceServiceStub(channel), channel)
    finally:
        channel.close()
        runtime.close()
        store._redis.close()
