"""`modelplane runs`, `compare --plot`, `register --from-run` and run search at scale."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelplane
from modelplane.cli import main
from modelplane.domain.experiments import MetricSeries, Run, RunStatus
from modelplane.sample_models import linear_model
from modelplane.v1 import experiments_pb2
from tests.integration.lifecycle_plane import LifecyclePlane, lifecycle_plane

pytestmark = pytest.mark.integration


@pytest.fixture()
def plane(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[LifecyclePlane]:
    with lifecycle_plane(redis_url, key_prefix, tmp_path) as started:
        yield started


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _train(plane: LifecyclePlane, name: str, lr: float, auc: float, steps: int = 200) -> str:
    with modelplane.start_run(experiment="fraud", name=name, address=plane.address) as run:
        run.log_params({"lr": lr})
        for step in range(steps):
            run.log_metric("loss", lr * 100 / (step + 1), step=step)
        run.log_metric("auc", auc)
    return run.run_id


def test_runs_search_compare_plot_and_register_from_run(
    plane: LifecyclePlane, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = {
        name: _train(plane, name, lr, auc)
        for name, lr, auc in (
            ("slow-good", 0.001, 0.95),
            ("fast-good", 0.1, 0.97),
            ("slow-best", 0.005, 0.99),
            ("slow-bad", 0.0001, 0.80),
        )
    }
    c = ["--control", plane.address, "--inference", "127.0.0.1:1"]

    code, out = _cli(capsys, "runs", *c, "--where", "metrics.auc>0.9 and params.lr<0.01",
                     "--order-by", "metrics.auc", "--json")
    assert code == 0, out
    assert [r["name"] for r in json.loads(out)] == ["slow-good", "slow-best"]

    code, out = _cli(capsys, "runs", *c, "--where", "metrics.auc>0.9 and params.lr<0.01",
                     "--order-by", "metrics.auc desc")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["RUN", "EXPERIMENT", "NAME", "STATUS", "params.lr",
                                "metrics.auc", "metrics.loss"]
    assert [line.split()[2] for line in lines[1:]] == ["slow-best", "slow-good"]

    code, out = _cli(capsys, "runs", *c, "--where", "metrics.auc>>1")
    assert code == 1
    assert "error: INVALID_ARGUMENT: where: expected a value after metrics.auc>" in out

    png = tmp_path / "curves.png"
    code, out = _cli(capsys, "compare", ids["slow-good"], ids["fast-good"], *c,
                     "--plot", str(png), "--metric", "loss")
    assert code == 0, out
    assert "params.lr *" in out  # differing params are marked
    assert f"wrote {png}" in out
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (800, 300)  # one 8x3 in panel at 100 dpi
    from matplotlib import image

    pixels = image.imread(str(png))
    # Two curves were drawn: the picture is not a blank canvas.
    assert pixels.shape[:2] == (300, 800) and pixels.std() > 0.05

    model = tmp_path / "model.onnx"
    model.write_bytes(linear_model(seed=5))
    with modelplane.start_run(experiment="fraud", name="final", address=plane.address) as run:
        run.log_params({"lr": 0.005})
        run.log_metric("auc", 0.985)
        run.log_artifact(model)
    code, out = _cli(capsys, "register", "fraud", "--from-run", run.run_id, *c,
                     "--actor", "ci", "--json")
    assert code == 0, out
    version = json.loads(out)
    assert version["status"] == "VERSION_STATUS_READY"
    assert version["lineage"]["source_run_id"] == run.run_id
    assert version["lineage"]["metrics"] == {"auc": 0.985}
    code, out = _cli(capsys, "versions", "fraud", *c, "--where", "metrics.auc>0.98", "--json")
    assert [v["version"] for v in json.loads(out)] == ["1"]


def test_searching_ten_thousand_runs_answers_under_200_ms(plane: LifecyclePlane) -> None:
    store = plane.experiments.store
    for i in range(10_000):
        store.start_run(
            Run(
                run_id=f"run{i:05d}", experiment="sweep", name=f"trial-{i}",
                status=RunStatus.FINISHED, start_ms=1_000 + i, end_ms=2_000 + i,
                params={"lr": str(10 ** -(1 + i % 5)), "depth": str(i % 12), "opt": "adam"},
                tags={"sweep": "grid"}, metrics={"auc": (i % 1000) / 1000, "loss": 1 / (i + 1)},
            )
        )
    # A run still logging: the search sees its newest metrics without a full re-read.
    live = plane.experiments.start_run("sweep", "live", params={"lr": "0.001"})

    request = dict(where="metrics.auc>0.9 and params.lr<0.01", order_by="metrics.auc desc")
    timings = []
    for attempt in range(3):
        plane.experiments.log_batch(
            live.run_id, metrics=[MetricSeries("auc", (attempt,), (0.5 + attempt / 10,), (0,))]
        )
        started = time.perf_counter()
        found = plane.client.experiments.SearchRuns(
            experiments_pb2.SearchRunsRequest(
                **request, limit=100_000
            )
        ).runs
        timings.append((time.perf_counter() - started) * 1000)
    # auc > 0.9: i % 1000 in 901..999 (99 of each 1000); lr < 0.01: i % 5 in 2, 3, 4.
    expected = sum(1 for i in range(10_000) if i % 1000 > 900 and i % 5 >= 2)
    # The live run's auc reached 0.7 only: not among them until it passes 0.9.
    assert len(found) == expected
    assert found[0].metrics["auc"] == 0.999
    plane.experiments.log_batch(live.run_id, metrics=[MetricSeries("auc", (9,), (0.9995,), (0,))])
    best = plane.client.experiments.SearchRuns(experiments_pb2.SearchRunsRequest(**request)).runs
    assert (best[0].name, best[0].metrics["auc"]) == ("live", 0.9995)
    print(f"search over 10,000 runs: first {timings[0]:.0f} ms, then "
          f"{timings[1]:.0f} ms / {timings[2]:.0f} ms (gRPC round trip included)")
    assert min(timings) < 200
