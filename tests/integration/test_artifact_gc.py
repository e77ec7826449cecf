"""Artifact garbage collection with real Redis and real files: the retention policy,
shared (content-addressed) files, dry runs, the audit, and the CLI over gRPC."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from modelplane.cli import main
from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.registry_wiring import add_registry_services
from modelplane.domain.errors import FailedPrecondition
from modelplane.domain.models import RouteTarget
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.retention import RetentionPolicy
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model

pytestmark = pytest.mark.integration

DAY_S = 86_400.0


@dataclass
class Setup:
    registry: Registry  # today
    later: Registry  # the same registry 100 days on
    artifacts: ArtifactStore
    control: str
    sha: dict[int, str]


@pytest.fixture()
def setup(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Setup]:
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    artifacts = ArtifactStore(tmp_path / "a")
    policy = RetentionPolicy(keep_last=2, referenced_days=90)
    registry = Registry(store, artifacts, retention=policy)
    later = Registry(store, artifacts, retention=policy, clock=lambda: time.time() + 100 * DAY_S)
    # v3 and v5 are the same bytes: one file, two versions.
    sha = {}
    for number, seed in ((1, 1), (2, 2), (3, 3), (4, 4), (5, 3)):
        version = registry.register_version("fraud", "", True, [linear_model(seed=seed)])
        assert version.version == number
        sha[number] = version.sha256
    assert sha[3] == sha[5]
    registry.set_route("score", [RouteTarget("fraud", 100, version=5)], expected_revision=0)
    for number in (1, 2, 3, 4):
        registry.archive_version("fraud", number)
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[ErrorInterceptor()])
    add_registry_services(server, later)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield Setup(registry, later, artifacts, f"127.0.0.1:{port}", sha)
    finally:
        server.stop(None)
        store._redis.close()


def _files(setup: Setup) -> dict[int, bool]:
    return {n: setup.artifacts.path_for(s).exists() for n, s in setup.sha.items()}


def _kept(plan: object) -> dict[int, str]:
    return {d.version.version: d.kept_because for d in plan.keep}  # type: ignore[attr-defined]


def test_policy_shared_files_dry_run_and_audit(setup: Setup) -> None:
    # Today every retirement is recent: the audit protects them all.
    today = setup.registry.gc_artifacts()
    assert today.purge == () and today.files == {}
    assert _kept(today) == {
        1: "referenced in the audit within 90 days",
        2: "referenced in the audit within 90 days",
        3: "referenced in the audit within 90 days",
        4: "one of the 2 latest versions",
    }

    # 100 days on: v1 and v2 go; v3's file is v5's too; v4 is among the 2 latest.
    dry = setup.later.gc_artifacts(dry_run=True)
    assert [d.version.version for d in dry.purge] == [1, 2]
    assert _kept(dry) == {
        3: "its file is still used by another version or a run",
        4: "one of the 2 latest versions",
    }
    assert dry.bytes_freed == sum(
        setup.registry.get_version("fraud", n).size_bytes for n in (1, 2)
    )
    assert all(_files(setup).values())  # a dry run deletes nothing...
    assert setup.registry.query_audit(action="artifact_deleted") == []  # ...and records nothing
    assert setup.registry.get_version("fraud", 1).artifact_purged_at_ms == 0

    done = setup.later.gc_artifacts()
    assert [d.version.version for d in done.purge] == [1, 2]
    assert set(done.files) == {setup.sha[1], setup.sha[2]}
    assert _files(setup) == {1: False, 2: False, 3: True, 4: True, 5: True}
    events = setup.registry.query_audit(action="artifact_deleted")
    assert [e.subject for e in events] == ["model/fraud/version/1", "model/fraud/version/2"]
    after = json.loads(events[0].after_json)
    assert after["sha256"] == setup.sha[1] and after["status"] == "ARCHIVED"
    assert after["artifact_purged_at_ms"] > 0

    # The record stays, marked purged; it can never be routed to or verified.
    purged = setup.registry.get_version("fraud", 1)
    assert purged.status.value == "ARCHIVED" and purged.artifact_purged_at_ms > 0
    with pytest.raises(FailedPrecondition) as info:
        setup.registry.set_route("new", [RouteTarget("fraud", 1, version=1)], 0)
    assert info.value.message == (
        "targets[0]: version 1 of model 'fraud' is ARCHIVED (retired) and its artifact was "
        "purged; retired versions are never routed to again; register the model again for "
        "a new version"
    )
    with pytest.raises(FailedPrecondition) as info:
        setup.registry.verify_version("fraud", 1)
    assert info.value.message.endswith("there is no artifact to verify")
    assert setup.registry.get_version("fraud", 1).status.value == "ARCHIVED"

    # Nothing left to do: a second run purges nothing.
    again = setup.later.gc_artifacts()
    assert again.purge == () and again.files == {}


def test_a_file_another_owner_uses_is_never_deleted(setup: Setup) -> None:
    setup.later.artifact_owners.append(lambda: {setup.sha[2]})
    done = setup.later.gc_artifacts()
    assert [d.version.version for d in done.purge] == [1]
    assert _kept(done)[2] == "its file is still used by another version or a run"
    assert _files(setup)[2] is True and _files(setup)[1] is False


def test_cli_dry_run_then_collect(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    c = ["--control", setup.control, "--inference", "127.0.0.1:1", "--actor", "ops"]
    assert main(["gc-artifacts", "--dry-run", "--json", *c]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True
    assert [(p["version"], p["sha256"]) for p in out["purged"]] == [
        ("1", setup.sha[1]), ("2", setup.sha[2])
    ]
    assert all(_files(setup).values())

    assert main(["gc-artifacts", *c]) == 0
    text = capsys.readouterr().out
    assert f"purged fraud:1 {setup.sha[1][:12]}" in text
    assert "kept fraud:4: one of the 2 latest versions" in text
    assert _files(setup) == {1: False, 2: False, 3: True, 4: True, 5: True}
    assert [e.actor for e in setup.registry.query_audit(action="artifact_deleted")] == [
        "ops", "ops"
    ]

    assert main(["retire-endpoint", "score", *c, "--reason", "replaced"]) == 0
    assert capsys.readouterr().out == "retired endpoint score (was at revision 1)\n"
    (event,) = setup.registry.query_audit(action="retire_endpoint")
    assert (event.endpoint, event.actor, event.reason) == ("score", "ops", "replaced")
    assert main(["retire-endpoint", "score", *c]) == 1
    assert capsys.readouterr().err == "error: NOT_FOUND: endpoint 'score' not found\n"
