"""Lineage, validation, aliases, audit, concurrency and integrity over real gRPC and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from registry_models import endless_loop_model, unknown_op_model

from modelplane.codec.errors import ErrorInterceptor
from modelplane.codec.registry import audit_event_from_proto
from modelplane.control.registry_wiring import add_registry_services
from modelplane.domain.models import RouteTarget
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.audit_replay import replay
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.reference import dump_reference
from modelplane.registry.sandbox import Limits, Sandbox
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model, reference_linear
from modelplane.v1 import registry_pb2, registry_pb2_grpc, routing_pb2, routing_pb2_grpc

pytestmark = pytest.mark.integration

READY = registry_pb2.VERSION_STATUS_READY
FAILED = registry_pb2.VERSION_STATUS_FAILED
ARCHIVED = registry_pb2.VERSION_STATUS_ARCHIVED


@dataclass
class Plane:
    registry: registry_pb2_grpc.RegistryServiceStub
    routing: routing_pb2_grpc.RoutingServiceStub
    store: RedisRegistryStore
    artifacts: ArtifactStore


@pytest.fixture()
def plane(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Plane]:
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    artifacts = ArtifactStore(tmp_path / "artifacts")
    registry = Registry(store, artifacts, sandbox=Sandbox(Limits(timeout_s=5)))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16), interceptors=[ErrorInterceptor()]
    )
    add_registry_services(server, registry)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Plane(
            registry_pb2_grpc.RegistryServiceStub(channel),
            routing_pb2_grpc.RoutingServiceStub(channel),
            store,
            artifacts,
        )
    finally:
        channel.close()
        server.stop(grace=None)


def _register(
    plane: Plane,
    data: bytes,
    model: str = "fraud",
    actor: str = "alice",
    **header: object,
) -> registry_pb2.ModelVersion:
    head = registry_pb2.RegisterVersionHeader(model=model, create_model=True, **header)  # type: ignore[arg-type]
    requests = iter(
        [registry_pb2.RegisterVersionRequest(header=head),
         registry_pb2.RegisterVersionRequest(chunk=data)]
    )
    return plane.registry.RegisterVersion(
        requests, timeout=60, metadata=(("x-modelplane-actor", actor),)
    )


def _error(call: object) -> grpc.RpcError:
    assert isinstance(call, grpc.RpcError)
    return call


def _stamp(ms: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def test_lineage_is_stored_returned_and_filterable(plane: Plane) -> None:
    lineage = registry_pb2.Lineage(
        source_run_id="run-42", dataset_uri="s3://data/train.parquet",
        dataset_hash="sha256:" + "ab" * 32, params={"lr": "0.1"},
        metrics={"auc": 0.93}, code_commit="deadbeef", tags={"team": "risk"},
    )
    first = _register(plane, linear_model(seed=1), lineage=lineage, description="first")
    assert first.status == READY
    assert first.lineage == lineage
    assert first.opset > 0
    assert [s.name for s in first.signature.inputs] == ["x"]
    child = registry_pb2.Lineage(parent_version=1, metrics={"auc": 0.85}, tags={"team": "ops"})
    second = _register(plane, linear_model(seed=2), lineage=child)
    assert second.lineage.parent_version == 1
    got = plane.registry.GetVersion(registry_pb2.GetVersionRequest(model="fraud", version=1))
    assert got.lineage == lineage

    def where(expr: str) -> list[int]:
        response = plane.registry.ListVersions(
            registry_pb2.ListVersionsRequest(model="fraud", where=expr), timeout=10
        )
        return [v.version for v in response.versions]

    assert where("metrics.auc>0.9") == [1]
    assert where("metrics.auc>0.8 and tags.team=ops") == [2]
    assert where("tags.team=risk or tags.team=ops") == [1, 2]
    assert where("params.lr=0.1 and status=ready") == [1]
    with pytest.raises(grpc.RpcError) as info:
        where("metrics.auc>>0.9")
    assert _error(info.value).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error(info.value).details() == "where: expected a value after metrics.auc>, got '>'"

    with pytest.raises(grpc.RpcError) as info:
        _register(plane, linear_model(seed=3), lineage=registry_pb2.Lineage(parent_version=9))
    assert _error(info.value).code() == grpc.StatusCode.NOT_FOUND
    assert _error(info.value).details() == (
        "lineage.parent_version: version 9 of model 'fraud' not found"
    )


def test_failed_versions_say_why_and_cannot_be_aliased_or_routed(plane: Plane) -> None:
    x = np.ones((2, 16), np.float32)
    good_ref = dump_reference({"x": x}, {"y": reference_linear(x, seed=0)})
    ok = _register(plane, linear_model(seed=0), reference_npz=good_ref)
    assert ok.status == READY
    assert len(ok.reference_sha256) == 64
    assert (ok.reference_rtol, ok.reference_atol) == (1e-5, 1e-6)

    mismatch = _register(plane, linear_model(seed=1), reference_npz=good_ref)
    assert mismatch.status == FAILED
    assert mismatch.status_reason.startswith("reference output 'y': differs by up to ")

    unloadable = _register(plane, unknown_op_model())
    assert unloadable.status == FAILED
    assert "Frobnicate" in unloadable.status_reason

    started = time.monotonic()
    hang_ref = dump_reference({"x": np.zeros(1, np.float32)}, {"y": np.zeros(1, np.float32)})
    hung = _register(plane, endless_loop_model(), reference_npz=hang_ref)
    assert hung.status == FAILED
    assert hung.status_reason == "validation did not finish within 5 s"
    assert time.monotonic() - started < 15

    with pytest.raises(grpc.RpcError) as info:
        plane.registry.SetAlias(
            registry_pb2.SetAliasRequest(model="fraud", alias="prod", version=2)
        )
    assert _error(info.value).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _error(info.value).details() == (
        "version 2 of model 'fraud' is FAILED, not READY; only READY versions can be aliased"
    )
    with pytest.raises(grpc.RpcError) as info:
        plane.routing.SetRoute(
            routing_pb2.SetRouteRequest(
                endpoint="score", targets=[routing_pb2.RouteTarget(model="fraud", version=3,
                                                                   weight=1)]
            )
        )
    assert _error(info.value).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _error(info.value).details() == (
        "targets[0]: version 3 of model 'fraud' is FAILED, not READY; "
        "only READY versions can be routed to"
    )
    statuses = plane.store.snapshot().versions
    assert [statuses[k].status.value for k in sorted(statuses, key=lambda k: k.version)] == [
        "READY", "FAILED", "FAILED", "FAILED"
    ]


def test_alias_history_delete_and_archive(plane: Plane) -> None:
    for seed in (1, 2, 3):
        _register(plane, linear_model(seed=seed))
    for version, actor in ((1, "alice"), (2, "bob")):
        plane.registry.SetAlias(
            registry_pb2.SetAliasRequest(model="fraud", alias="prod", version=version),
            metadata=(
                ("x-modelplane-actor", actor),
                ("x-modelplane-reason", f"promote {version}"),
            ),
        )
    plane.routing.SetRoute(
        routing_pb2.SetRouteRequest(
            endpoint="score",
            targets=[routing_pb2.RouteTarget(model="fraud", alias="prod", weight=9),
                     routing_pb2.RouteTarget(model="fraud", version=3, weight=1)],
        )
    )
    history = plane.registry.ListAliasHistory(
        registry_pb2.ListAliasHistoryRequest(model="fraud", alias="prod")
    ).changes
    assert [(c.version, c.previous_version, c.actor, c.reason) for c in history] == [
        (1, 0, "alice", "promote 1"), (2, 1, "bob", "promote 2")
    ]

    with pytest.raises(grpc.RpcError) as info:
        plane.registry.DeleteVersion(registry_pb2.DeleteVersionRequest(model="fraud", version=2))
    assert _error(info.value).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _error(info.value).details() == (
        "version 2 of model 'fraud' is still referenced by alias 'prod' and endpoint(s) "
        "'score'; move or delete those first, or archive the version instead"
    )
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.ArchiveVersion(registry_pb2.ArchiveVersionRequest(model="fraud", version=3))
    assert _error(info.value).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _error(info.value).details() == (
        "version 3 of model 'fraud' is still served by endpoint(s) 'score'; "
        "change those routes first"
    )
    archived = plane.registry.ArchiveVersion(
        registry_pb2.ArchiveVersionRequest(model="fraud", version=1)
    )
    assert archived.status == ARCHIVED
    plane.registry.DeleteVersion(registry_pb2.DeleteVersionRequest(model="fraud", version=1))
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.GetVersion(registry_pb2.GetVersionRequest(model="fraud", version=1))
    assert _error(info.value).code() == grpc.StatusCode.NOT_FOUND
    # The number is never handed out again.
    assert _register(plane, linear_model(seed=4)).version == 4


def test_audit_query_served_at_and_replay(plane: Plane) -> None:
    for seed in (1, 2):
        _register(plane, linear_model(seed=seed), actor="ci")
    meta: tuple[tuple[str, str | bytes], ...] = (("x-modelplane-actor", "alice"),)
    plane.registry.SetAlias(
        registry_pb2.SetAliasRequest(model="fraud", alias="prod", version=1), metadata=meta
    )
    plane.routing.SetRoute(
        routing_pb2.SetRouteRequest(
            endpoint="score",
            targets=[routing_pb2.RouteTarget(model="fraud", alias="prod", weight=1)],
        ),
        metadata=meta,
    )
    time.sleep(0.02)
    before_move = int(time.time() * 1000)
    time.sleep(0.02)
    plane.registry.SetAlias(
        registry_pb2.SetAliasRequest(model="fraud", alias="prod", version=2),
        metadata=(("x-modelplane-actor", "bob"), ("x-modelplane-reason", "canary good"),),
    )
    plane.routing.SetRoute(
        routing_pb2.SetRouteRequest(
            endpoint="other", targets=[routing_pb2.RouteTarget(model="fraud", version=1, weight=1)]
        )
    )
    plane.routing.DeleteRoute(routing_pb2.DeleteRouteRequest(endpoint="other"))

    bob = plane.registry.QueryAudit(registry_pb2.QueryAuditRequest(actor="bob")).events
    assert [(e.action, e.subject, e.reason) for e in bob] == [
        ("set_alias", "model/fraud/alias/prod", "canary good")
    ]
    assert json.loads(bob[0].before_json) == {"version": 1}
    assert json.loads(bob[0].after_json) == {"version": 2}
    by_model = plane.registry.QueryAudit(registry_pb2.QueryAuditRequest(model="fraud")).events
    assert [e.action for e in by_model] == [
        "create_model", "register_version", "validate_version", "register_version",
        "validate_version", "set_alias", "set_alias",
    ]
    assert {e.actor for e in by_model[:5]} == {"ci"}
    score = plane.registry.QueryAudit(registry_pb2.QueryAuditRequest(endpoint="score")).events
    assert [(e.action, e.actor) for e in score] == [("set_route", "alice")]
    recent = plane.registry.QueryAudit(
        registry_pb2.QueryAuditRequest(since=_stamp(before_move))
    ).events
    assert [e.action for e in recent] == ["set_alias", "set_route", "delete_route"]

    then = plane.registry.ServedAt(
        registry_pb2.ServedAtRequest(endpoint="score", time=_stamp(before_move))
    )
    assert [(t.model, t.version, t.alias, t.weight) for t in then.targets] == [
        ("fraud", 1, "prod", 1)
    ]
    now = plane.registry.ServedAt(
        registry_pb2.ServedAtRequest(endpoint="score", time=_stamp(int(time.time() * 1000)))
    )
    assert [t.version for t in now.targets] == [2]
    never = plane.registry.ServedAt(registry_pb2.ServedAtRequest(endpoint="score", time=_stamp(0)))
    assert (never.revision, list(never.targets)) == (0, [])

    everything = plane.registry.QueryAudit(registry_pb2.QueryAuditRequest()).events
    aliases, routes = replay(audit_event_from_proto(e) for e in everything)
    snapshot = plane.store.snapshot()
    assert aliases == snapshot.aliases
    assert routes == {name: route.targets for name, route in snapshot.routes.items()}
    assert routes == {"score": (RouteTarget("fraud", 1, alias="prod"),)}


def test_hundred_concurrent_registrations_and_idempotency(plane: Plane) -> None:
    models = [linear_model(seed=seed) for seed in range(100)]
    with futures.ThreadPoolExecutor(max_workers=100) as pool:
        versions = list(pool.map(lambda data: _register(plane, data), models))
    assert sorted(v.version for v in versions) == list(range(1, 101))
    assert {v.status for v in versions} == {READY}
    assert len({v.sha256 for v in versions}) == 100
    for version in versions:
        assert plane.artifacts.read_verified(version.sha256)

    first = _register(plane, linear_model(seed=500), idempotency_key="train-run-7")
    again = _register(plane, linear_model(seed=500), idempotency_key="train-run-7")
    assert first == again
    assert first.version == 101
    assert plane.registry.GetModel(registry_pb2.GetModelRequest(name="fraud")).latest_version == 101


def test_corrupted_artifact_is_data_loss_recorded_in_status_and_audit(plane: Plane) -> None:
    version = _register(plane, linear_model(seed=1))
    path = plane.artifacts.path_for(version.sha256)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    request = registry_pb2.GetVersionRequest(model="fraud", version=1)
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.VerifyVersion(request, metadata=(("x-modelplane-actor", "auditor"),))
    assert _error(info.value).code() == grpc.StatusCode.DATA_LOSS
    assert (_error(info.value).details() or "").startswith(
        f"version 1 of model 'fraud': integrity check failed: artifact {version.sha256} is corrupt"
    )
    now = plane.registry.GetVersion(request)
    assert now.status == FAILED
    assert now.status_reason.startswith("integrity check failed: artifact")
    events = plane.registry.QueryAudit(
        registry_pb2.QueryAuditRequest(action="integrity_failure")
    ).events
    assert [(e.subject, e.actor) for e in events] == [("model/fraud/version/1", "auditor")]
