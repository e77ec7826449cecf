"""Experiment messages round-trip between the domain and the wire."""

from __future__ import annotations

import pytest

from modelplane.codec.experiments import (
    environment_from_proto,
    environment_to_proto,
    promotion_from_proto,
    promotion_to_proto,
    run_from_proto,
    run_status_from_proto,
    run_to_proto,
    series_from_proto,
    series_to_proto,
)
from modelplane.domain.errors import InvalidArgument
from modelplane.domain.experiments import (
    Environment,
    GateResult,
    MetricSeries,
    Promotion,
    Run,
    RunArtifact,
    RunStatus,
)
from modelplane.domain.models import Route, RouteTarget
from modelplane.experiments import records, series


def test_run_round_trips_running_and_finished() -> None:
    running = Run(
        run_id="abc", experiment="fraud", name="r1", status=RunStatus.RUNNING, start_ms=1_000,
        code_commit="deadbeef", dataset_uri="s3://d", dataset_hash="sha256:1",
        params={"lr": "0.1"}, tags={"team": "risk"}, metrics={"auc": 0.9312345678901234},
        artifacts=(RunArtifact("model.onnx", "a" * 64, 10),),
    )
    assert run_from_proto(run_to_proto(running)) == running
    finished = Run(run_id="x", experiment="e", name="n", status=RunStatus.FAILED,
                   start_ms=5, end_ms=9)
    assert run_from_proto(run_to_proto(finished)) == finished
    assert records.run_from_record("abc", "fraud", records.run_record(running)) == running


def test_series_environment_promotion_round_trip() -> None:
    points = MetricSeries("loss", (0, 1, 2), (1.0, 0.5, 0.25), (10, 11, 12))
    assert series_from_proto(series_to_proto(points)) == points
    assert series.unpack("loss", [series.pack((0, 1), (1.0, 0.5), (10, 11)),
                                  series.pack((2,), (0.25,), (12,))]) == points
    env = Environment("staging", "pre-prod", {"fraud": "staging-fraud"}, "pool-a", 123)
    assert environment_from_proto(environment_to_proto(env)) == env
    promotion = Promotion(
        model="fraud", version=3, from_environment="staging", to_environment="production",
        endpoint="fraud", from_endpoint="staging-fraud", to_endpoint="fraud",
        gates=(GateResult("ready", True, "READY"),), actor="alice", reason="q3",
        promoted_at_ms=77,
        route=Route("fraud", (RouteTarget("fraud", 100, version=3),), 2, 77),
    )
    assert promotion_from_proto(promotion_to_proto(promotion)) == promotion
    assert records.promotion_from_record(records.promotion_record(promotion)) == promotion


def test_unspecified_run_status_is_refused() -> None:
    with pytest.raises(InvalidArgument) as caught:
        run_status_from_proto(0)
    assert caught.value.message == "status: a run status is required, got RUN_STATUS_UNSPECIFIED"
