"""Retiring versions and endpoints, end to end in process: the real control plane over
gRPC, Redis, and a replica (ReplicaRuntime, real onnxruntime) serving what it routes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelplane.codec.tensors import array_to_tensor
from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.domain.models import VersionKey
from modelplane.sample_models import linear_model
from modelplane.serving.replica import ReplicaRuntime
from modelplane.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
    routing_pb2,
    routing_pb2_grpc,
)

pytestmark = pytest.mark.integration

X = np.random.default_rng(7).standard_normal((2, 16)).astype(np.float32)
ARCHIVED = registry_pb2.VERSION_STATUS_ARCHIVED
ME = (("x-modelplane-actor", "ops"), ("x-modelplane-reason", "end of life"))


@dataclass
class Stack:
    control: ControlPlane
    runtime: ReplicaRuntime
    registry: registry_pb2_grpc.RegistryServiceStub
    routing: routing_pb2_grpc.RoutingServiceStub
    rollouts: rollout_pb2_grpc.RolloutServiceStub
    inference: inference_pb2_grpc.InferenceServiceStub


@pytest.fixture()
def stack(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Stack]:
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path, control_port=0,
        inference_port=0, alert_watch_interval_s=0,
    )
    control = ControlPlane(settings, redis_url)
    control.registry.route_ack_timeout_s = 5.0
    control.start()
    for seed in (1, 2, 3):
        control.registry.register_version("m", "", create_model=True,
                                          chunks=[linear_model(seed=seed)])
    runtime = ReplicaRuntime(settings, "r-retire")
    channel = grpc.insecure_channel(control.address)
    inference = grpc.insecure_channel(runtime.address)
    try:
        yield Stack(
            control, runtime, registry_pb2_grpc.RegistryServiceStub(channel),
            routing_pb2_grpc.RoutingServiceStub(channel),
            rollout_pb2_grpc.RolloutServiceStub(channel),
            inference_pb2_grpc.InferenceServiceStub(inference),
        )
    finally:
        channel.close()
        inference.close()
        runtime.close()
        control.stop(0)


def _route(stack: Stack, endpoint: str, version: int, **policy: object) -> routing_pb2.Route:
    try:
        revision = stack.routing.GetRoute(routing_pb2.GetRouteRequest(endpoint=endpoint)).revision
    except grpc.RpcError:
        revision = 0
    return stack.routing.SetRoute(
        routing_pb2.SetRouteRequest(
            endpoint=endpoint, expected_revision=revision,
            targets=[routing_pb2.RouteTarget(model="m", version=version, weight=100)],
            **policy,  # type: ignore[arg-type]
        ),
        metadata=ME,
    )


def _refused(call: object, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    error: grpc.Call = info.value  # type: ignore[assignment]
    assert error.code() == code, error.details()
    return str(error.details())


def _predict(stack: Stack, endpoint: str) -> inference_pb2.PredictResponse:
    return stack.inference.Predict(
        inference_pb2.PredictRequest(endpoint=endpoint, inputs=[array_to_tensor("x", X)]),
        timeout=5,
    )


def test_retired_version_is_unloaded_refused_everywhere_and_kept_on_record(
    stack: Stack,
) -> None:
    _route(stack, "fraud", 1)
    assert _predict(stack, "fraud").version == 1
    assert VersionKey("m", 1) in stack.runtime.sessions.loaded_keys()

    # Retiring a routed version names the endpoints that route to it.
    details = _refused(
        lambda: stack.registry.ArchiveVersion(
            registry_pb2.ArchiveVersionRequest(model="m", version=1), metadata=ME
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert details == (
        "version 1 of model 'm' is still served by endpoint(s) 'fraud'; change those routes first"
    )

    _route(stack, "fraud", 2)
    _route(stack, "fraud", 3)  # version 1 is no longer needed, even as the previous table
    archived = stack.registry.ArchiveVersion(
        registry_pb2.ArchiveVersionRequest(model="m", version=1), metadata=ME
    )
    assert archived.status == ARCHIVED
    # Unloaded: the replica drops the session at the swap to the archive's generation
    # (which the call waited for; the eviction follows the swap on the same thread).
    deadline = time.monotonic() + 5
    while VersionKey("m", 1) in stack.runtime.sessions.loaded_keys():
        assert time.monotonic() < deadline, "version 1 is still loaded on the replica"
        time.sleep(0.01)
    assert VersionKey("m", 3) in stack.runtime.sessions.loaded_keys()

    retired = "version 1 of model 'm' is ARCHIVED (retired); retired versions are never " \
        "routed to again; register the model again for a new version"
    one = routing_pb2.RouteTarget(model="m", version=1, weight=100)
    three = routing_pb2.RouteTarget(model="m", version=3, weight=100)
    for request, field in (
        (routing_pb2.SetRouteRequest(endpoint="other", targets=[one]), "targets[0]"),
        (routing_pb2.SetRouteRequest(
            endpoint="other", targets=[three],
            shadows=[routing_pb2.ShadowTarget(model="m", version=1, percent=10)],
        ), "shadows[0]"),
        (routing_pb2.SetRouteRequest(
            endpoint="other", targets=[three],
            fallback=routing_pb2.RouteTarget(model="m", version=1),
        ), "fallback"),
    ):
        details = _refused(
            lambda r=request: stack.routing.SetRoute(r), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert details == f"{field}: {retired}"
    details = _refused(
        lambda: stack.rollouts.StartRollout(rollout_pb2.StartRolloutRequest(
            endpoint="fraud", version=1, steps=[50, 100], interval_seconds=1.0,
            gates=rollout_pb2.RolloutGates(max_p99_ratio=2.0, max_error_rate=0.1),
        )),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert details == f"version: {retired}"
    details = _refused(
        lambda: stack.registry.SetAlias(
            registry_pb2.SetAliasRequest(model="m", alias="prod", version=1)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "ARCHIVED" in details and "version 1 of model 'm'" in details

    # The record, its lineage and its audit stay.
    kept = stack.registry.GetVersion(registry_pb2.GetVersionRequest(model="m", version=1))
    assert kept.status == ARCHIVED and kept.sha256 == archived.sha256
    events = stack.registry.QueryAudit(
        registry_pb2.QueryAuditRequest(model="m", action="archive_version")
    ).events
    assert [(e.subject, e.actor, e.reason) for e in events] == [
        ("model/m/version/1", "ops", "end of life")
    ]


def test_retired_endpoint_answers_not_found_and_keeps_its_history(stack: Stack) -> None:
    _route(stack, "fraud", 1)
    _route(stack, "fraud", 2)
    assert _predict(stack, "fraud").version == 2

    response = stack.registry.RetireEndpoint(
        registry_pb2.RetireEndpointRequest(endpoint="fraud"), metadata=ME
    )
    assert response.revision == 2
    # Once the call returns the replicas serve the change.
    details = _refused(lambda: _predict(stack, "fraud"), grpc.StatusCode.NOT_FOUND)
    assert details == "endpoint 'fraud' not found"
    details = _refused(
        lambda: stack.routing.GetRoute(routing_pb2.GetRouteRequest(endpoint="fraud")),
        grpc.StatusCode.NOT_FOUND,
    )
    assert details == "endpoint 'fraud' not found"
    details = _refused(
        lambda: stack.registry.RetireEndpoint(
            registry_pb2.RetireEndpointRequest(endpoint="fraud"), metadata=ME
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert details == "endpoint 'fraud' not found"

    events = stack.registry.QueryAudit(registry_pb2.QueryAuditRequest(endpoint="fraud")).events
    assert [e.action for e in events] == ["set_route", "set_route", "retire_endpoint"]
    last = events[-1]
    assert (last.actor, last.reason) == ("ops", "end of life")
    assert json.loads(last.before_json)["targets"] == [{"model": "m", "version": 2, "weight": 100}]
    # What it served before retirement is still answerable.
    served = stack.registry.ServedAt(registry_pb2.ServedAtRequest(
        endpoint="fraud", time=events[1].time,
    ))
    assert [(t.model, t.version) for t in served.targets] == [("m", 2)]
    # Nothing routes to its versions any more: they can be retired too.
    assert stack.registry.ArchiveVersion(
        registry_pb2.ArchiveVersionRequest(model="m", version=2), metadata=ME
    ).status == ARCHIVED


def test_a_version_loaded_by_a_direct_request_or_one_swap_ago_is_unloaded_when_retired(
    stack: Stack,
) -> None:
    _route(stack, "fraud", 1)
    _route(stack, "fraud", 2)  # version 1 stays warm: the previous table needed it
    direct = stack.inference.Predict(
        inference_pb2.PredictRequest(
            model=inference_pb2.ModelRef(model="m", version=3), inputs=[array_to_tensor("x", X)]
        ),
        timeout=5,
    )
    assert direct.version == 3  # loaded on demand, kept while it exists
    loaded = stack.runtime.sessions.loaded_keys()
    assert {VersionKey("m", 1), VersionKey("m", 3)} <= loaded

    for version in (1, 3):
        stack.registry.ArchiveVersion(
            registry_pb2.ArchiveVersionRequest(model="m", version=version), metadata=ME
        )
    deadline = time.monotonic() + 5
    while {VersionKey("m", 1), VersionKey("m", 3)} & stack.runtime.sessions.loaded_keys():
        assert time.monotonic() < deadline, (
            f"retired versions still loaded: {stack.runtime.sessions.loaded_keys()}"
        )
        time.sleep(0.01)
    assert VersionKey("m", 2) in stack.runtime.sessions.loaded_keys()
