"""`modelplane import mlflow` against a small MLflow store built here (SQLite backend).

SQLite is the backend MLflow maintains; the importer goes through MLflow's own
client, so a ``./mlruns`` file store (MLFLOW_ALLOW_FILE_STORE=true) reads the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelplane.cli import main
from modelplane.sample_models import linear_model
from modelplane.v1 import experiments_pb2
from tests.integration.lifecycle_plane import LifecyclePlane, lifecycle_plane

pytestmark = pytest.mark.integration
mlflow = pytest.importorskip("mlflow")


@pytest.fixture()
def plane(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[LifecyclePlane]:
    with lifecycle_plane(redis_url, key_prefix, tmp_path) as started:
        yield started


def _mlflow_store(root: Path) -> tuple[str, dict[str, str]]:
    """Two versions of 'fraud model' from two runs, an alias, and a non-ONNX model."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client: Any = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment(
        "fraud detection", artifact_location=(root / "mlartifacts").as_uri()
    )
    runs: dict[str, str] = {}
    client.create_registered_model("fraud model", description="card fraud")
    for seed, lr, auc in ((1, "0.01", 0.91), (2, "0.001", 0.96)):
        run = client.create_run(experiment, run_name=f"trial-{seed}",
                                tags={"team": "risk", "mlflow.source.git.commit": f"c{seed}"})
        run_id = run.info.run_id
        client.log_param(run_id, "lr", lr)
        for step in range(5):
            client.log_metric(run_id, "loss", 1.0 / (step + seed), step=step)
        client.log_metric(run_id, "loss_raw", math.nan, step=0)
        client.log_metric(run_id, "auc", auc)
        model = root / f"model-{seed}" / "model.onnx"
        model.parent.mkdir()
        model.write_bytes(linear_model(seed=seed))
        client.log_artifact(run_id, str(model), artifact_path="model")
        client.set_terminated(run_id)
        client.create_model_version(
            "fraud model", source=f"{run.info.artifact_uri}/model", run_id=run_id,
            description=f"trial {seed}",
        )
        runs[f"trial-{seed}"] = run_id
    client.set_registered_model_alias("fraud model", "champion", "2")
    pickled = client.create_run(experiment, run_name="sklearn")
    notes = root / "notes.txt"
    notes.write_text("not a model")
    client.log_artifact(pickled.info.run_id, str(notes), artifact_path="model")
    client.create_registered_model("legacy")
    client.create_model_version(
        "legacy", source=f"{pickled.info.artifact_uri}/model", run_id=pickled.info.run_id
    )
    return uri, runs


def test_import_brings_models_versions_aliases_and_runs(
    plane: LifecyclePlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri, mlflow_runs = _mlflow_store(tmp_path)
    c = ["--control", plane.address, "--inference", "127.0.0.1:1"]
    code = main(["import", "mlflow", "--tracking-uri", uri, *c, "--actor", "migrator", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["versions"] == [
        ["fraud model", "1", "fraud-model", 1, "VERSION_STATUS_READY"],
        ["fraud model", "2", "fraud-model", 2, "VERSION_STATUS_READY"],
    ]
    assert report["aliases"] == [["fraud-model", "champion", 2]]
    assert len(report["skipped"]) == 1
    assert report["skipped"][0].startswith(
        f"legacy v1: no single .onnx file under {tmp_path.as_uri()}/mlartifacts/"
    )
    assert report["dropped_points"] == 2  # the NaN points MLflow keeps

    alias = plane.client.get_alias("fraud-model", "champion")
    assert alias.version == 2
    version = plane.client.get_version("fraud-model", 2)
    assert version.description == "trial 2"
    lineage = version.lineage
    assert dict(lineage.params) == {"lr": "0.001"}
    assert lineage.metrics["auc"] == 0.96
    assert lineage.code_commit == "c2"
    assert lineage.tags["mlflow.run_id"] == mlflow_runs["trial-2"]
    assert lineage.tags["experiment"] == "fraud-detection"
    run = plane.client.experiments.GetRun(
        experiments_pb2.GetRunRequest(run_id=lineage.source_run_id)
    )
    assert (run.experiment, run.name, run.status) == (
        "fraud-detection", "trial-2", experiments_pb2.RUN_STATUS_FINISHED
    )
    history = plane.client.experiments.GetMetricHistory(
        experiments_pb2.GetMetricHistoryRequest(run_id=run.run_id, key="loss")
    )
    assert list(history.steps) == [0, 1, 2, 3, 4]
    assert list(history.values) == [1.0 / (step + 2) for step in range(5)]
    audit = plane.registry.query_audit(model="fraud-model", actor="migrator")
    assert [e.action for e in audit].count("register_version") == 2

    # Importing again adds nothing.
    code = main(["import", "mlflow", "--tracking-uri", uri, *c, "--json"])
    again = json.loads(capsys.readouterr().out)
    assert code == 0
    assert again["versions"] == []
    assert again["skipped"][:2] == [
        "fraud model v1: already imported as fraud-model:1",
        "fraud model v2: already imported as fraud-model:2",
    ]
    assert [v.version for v in plane.client.list_versions("fraud-model")] == [1, 2]
