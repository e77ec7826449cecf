"""The registry and audit commands against a real control-plane gRPC server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from modelplane.cli import main
from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.registry_wiring import add_registry_services
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model

pytestmark = pytest.mark.integration


@pytest.fixture()
def control(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[str]:
    registry = Registry(
        RedisRegistryStore.from_url(redis_url, key_prefix), ArtifactStore(tmp_path / "a")
    )
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[ErrorInterceptor()])
    add_registry_services(server, registry)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_register_filter_alias_history_and_audit(
    control: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = ["--control", control, "--inference", "127.0.0.1:1"]
    for seed, auc in ((1, "0.95"), (2, "0.80")):
        model = tmp_path / f"m{seed}.onnx"
        model.write_bytes(linear_model(seed=seed))
        code, out = _run(
            capsys, "register", "fraud", str(model), *c, "--metric", f"auc={auc}",
            "--tag", "team=risk", "--run-id", f"run-{seed}", "--actor", "ci",
        )
        assert code == 0, out
        assert "READY" in out

    code, out = _run(capsys, "versions", "fraud", *c, "--where", "metrics.auc>0.9", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [(v["version"], v["lineage"]["source_run_id"]) for v in listed] == [("1", "run-1")]

    code, out = _run(capsys, "versions", "fraud", *c)
    assert "METRICS" in out and "auc=0.95" in out and "team=risk" in out

    for version in ("1", "2"):
        assert _run(capsys, "alias", "set", "fraud", "prod", version, *c,
                    "--actor", "alice", "--reason", f"ship {version}")[0] == 0
    code, out = _run(capsys, "alias", "history", "fraud", "prod", *c)
    lines = out.strip().splitlines()
    assert lines[0].split() == ["WHEN", "FROM", "TO", "ACTOR", "REASON"]
    assert lines[2].split()[2:] == ["v1", "v2", "alice", "ship", "2"]

    code, out = _run(capsys, "audit", *c, "--actor", "alice", "--json")
    events = json.loads(out)
    assert [(e["action"], e["reason"]) for e in events] == [
        ("set_alias", "ship 1"), ("set_alias", "ship 2")
    ]

    code, out = _run(capsys, "audit", "at", "score", "now", *c)
    assert code == 0
    assert out.strip() == "endpoint score had no route at that time"

    code, out = _run(capsys, "delete-version", "fraud", "2", *c)
    assert code == 1
    assert out.strip() == (
        "error: FAILED_PRECONDITION: version 2 of model 'fraud' is still referenced by alias "
        "'prod'; move or delete those first, or archive the version instead"
    )
    code, out = _run(capsys, "archive", "fraud", "1", *c, "--json")
    assert json.loads(out)["status"] == "VERSION_STATUS_ARCHIVED"
