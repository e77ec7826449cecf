"""Environments and gated promotion over real gRPC, a real Redis and real onnxruntime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from modelplane.cli import main
from modelplane.domain.models import Lineage, RouteTarget
from modelplane.sample_models import linear_model
from modelplane.v1 import experiments_pb2, routing_pb2
from tests.integration.lifecycle_plane import LifecyclePlane, lifecycle_plane

pytestmark = pytest.mark.integration


@pytest.fixture()
def plane(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[LifecyclePlane]:
    with lifecycle_plane(redis_url, key_prefix, tmp_path) as started:
        registry = started.registry
        for seed, n_in, auc in ((1, 16, 0.91), (2, 16, 0.95), (3, 8, 0.99)):
            version = registry.register_version(
                "fraud", f"seed {seed}", True, [linear_model(n_in=n_in, seed=seed)],
                lineage=Lineage(metrics={"auc": auc}),
            )
            assert version.status.value == "READY"
        for name, endpoint in (("staging", "staging-fraud"), ("production", "fraud-prod")):
            started.environments.set_environment(name, {"fraud": endpoint}, f"{name}-pool")
        yield started


def _stage(plane: LifecyclePlane, version: int) -> None:
    current = plane.client.get_route("staging-fraud")
    plane.registry.set_route(
        "staging-fraud",
        (RouteTarget("fraud", 100, version=version),),
        current.revision if current is not None else 0,
    )


def _promote(plane: LifecyclePlane, version: int, actor: str = "alice",
             **options: object) -> experiments_pb2.Promotion:
    return plane.client.environments.Promote(
        experiments_pb2.PromoteRequest(
            model="fraud", version=version, from_environment="staging",
            to_environment="production", **options,  # type: ignore[arg-type]
        ),
        metadata=(("x-modelplane-actor", actor), ("x-modelplane-reason", "weekly release")),
    )


def _prod_targets(plane: LifecyclePlane) -> list[tuple[str, int, int]]:
    route = plane.client.routing.GetRoute(routing_pb2.GetRouteRequest(endpoint="fraud-prod"))
    return [(t.model, t.version, t.weight) for t in route.targets]


def test_promotion_copies_the_route_when_every_gate_passes(plane: LifecyclePlane) -> None:
    _stage(plane, 1)
    promotion = _promote(plane, 1)
    assert [(g.gate, g.passed) for g in promotion.gates] == [
        ("ready", True), ("staged", True), ("contract", True)
    ]
    assert promotion.gates[2].detail == "'fraud-prod' has no route yet; no callers to break"
    assert (promotion.actor, promotion.reason) == ("alice", "weekly release")
    assert (promotion.from_endpoint, promotion.to_endpoint) == ("staging-fraud", "fraud-prod")
    assert promotion.route.revision == 1
    assert _prod_targets(plane) == [("fraud", 1, 100)]

    _stage(plane, 2)
    with pytest.raises(grpc.RpcError) as caught:
        _promote(plane, 2, min_metrics={"auc": 0.99})
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == (
        "promotion of fraud:2 from staging to production refused: metric:auc: 0.95 < 0.99"
    )
    assert _prod_targets(plane) == [("fraud", 1, 100)]

    promotion = _promote(plane, 2, actor="bob", min_metrics={"auc": 0.9})
    assert [(g.gate, g.passed, g.detail) for g in promotion.gates][2:] == [
        ("contract", True, "compatible with fraud:1 on 'fraud-prod'"),
        ("metric:auc", True, "0.95 >= 0.9"),
    ]
    assert _prod_targets(plane) == [("fraud", 2, 100)]

    audit = plane.registry.query_audit(endpoint="fraud-prod")
    assert [(e.action, e.actor) for e in audit] == [
        ("set_route", "alice"), ("promote", "alice"), ("promote_refused", "alice"),
        ("set_route", "bob"), ("promote", "bob"),
    ]
    history = plane.client.environments.ListPromotions(
        experiments_pb2.ListPromotionsRequest(model="fraud")
    ).promotions
    assert [(p.version, p.actor, p.HasField("route")) for p in history] == [
        (1, "alice", True), (2, "alice", False), (2, "bob", True)
    ]


def test_incompatible_signature_is_refused_listing_the_differences(
    plane: LifecyclePlane,
) -> None:
    _stage(plane, 1)
    _promote(plane, 1)
    _stage(plane, 3)
    with pytest.raises(grpc.RpcError) as caught:
        _promote(plane, 3)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == (
        "promotion of fraud:3 from staging to production refused: contract: incompatible "
        "with fraud:1 on 'fraud-prod': input 'x': callers send [-1,16], candidate takes [-1,8]"
    )
    assert _prod_targets(plane) == [("fraud", 1, 100)]
    # A dry run shows the same verdict and changes nothing.
    dry = _promote(plane, 3, dry_run=True)
    assert [(g.gate, g.passed) for g in dry.gates] == [
        ("ready", True), ("staged", True), ("contract", False)
    ]
    assert not dry.HasField("route")


def test_unready_unstaged_and_unsoaked_versions_are_refused(plane: LifecyclePlane) -> None:
    _stage(plane, 2)
    plane.registry.archive_version("fraud", 1)
    with pytest.raises(grpc.RpcError) as caught:
        _promote(plane, 1, endpoint="fraud")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.details() == (
        "promotion of fraud:1 from staging to production refused: ready: version is "
        "ARCHIVED, not READY; staged: not served by 'staging-fraud'; route it there first"
    )
    with pytest.raises(grpc.RpcError) as soak:
        _promote(plane, 2, min_soak_seconds=3600)
    assert soak.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert soak.value.details().endswith(
        "soak: not yet served by 'staging-fraud' 3600 s ago"
    )
    with pytest.raises(grpc.RpcError) as unknown:
        plane.client.environments.Promote(
            experiments_pb2.PromoteRequest(model="fraud", version=2, from_environment="qa",
                                           to_environment="production")
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert unknown.value.details() == "environment 'qa' not found"


def test_cli_env_and_promote(plane: LifecyclePlane, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["--control", plane.address, "--inference", "127.0.0.1:1"]
    assert main(["env", "set", "canary", "--endpoint", "fraud=canary-fraud", *c,
                 "--actor", "ops"]) == 0
    assert main(["env", "list", *c]) == 0
    out = capsys.readouterr().out
    assert "canary       fraud->canary-fraud" in out
    assert "production   fraud->fraud-prod     production-pool" in out
    _stage(plane, 2)
    code = main(["promote", "fraud", "2", "--from", "staging", "--to", "production", *c,
                 "--min-metric", "auc=0.9", "--actor", "carol", "--reason", "ticket 42"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "metric:auc  pass    0.95 >= 0.9" in out
    assert "promoted fraud:2 to production (fraud-prod revision 1), approved by carol" in out
    code = main(["promote", "fraud", "2", "--from", "staging", "--to", "staging", *c])
    captured = capsys.readouterr()
    assert code == 1
    assert "error: INVALID_ARGUMENT: to_environment: expected an environment other than " \
        "'staging'" in captured.err
