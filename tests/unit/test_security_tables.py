"""Every RPC has a role (control plane) or an access rule (data plane), and `up`'s
local tokens are created once, private, and picked up by the CLI."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from modelplane.cli.auth import (
    ADMIN_TOKEN_FILE,
    AUTH_DIR,
    TOKENS_FILE,
    prepare_local_auth,
    read_local_token,
    with_configured_auth,
)
from modelplane.cli.common import client_from
from modelplane.config import Settings
from modelplane.control.auth import CONTROL_PLANE_ROLES
from modelplane.control.server import _SERVICE_NAMES
from modelplane.oip import grpc_service_pb2
from modelplane.security.tokens import hash_token, read_token_file
from modelplane.serving.security import DATA_PLANE_ACCESS

# Imported for their descriptors.
_ = (
    logs_service_pb2, metrics_service_pb2, trace_service_pb2, health_pb2, grpc_service_pb2
)


def _paths(*services: str) -> set[str]:
    pool = descriptor_pool.Default()
    return {
        f"/{name}/{method.name}"
        for name in services
        for method in pool.FindServiceByName(name).methods
    }


def test_every_control_plane_rpc_has_a_role() -> None:
    served = _paths(
        *_SERVICE_NAMES,
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        "opentelemetry.proto.collector.logs.v1.LogsService",
        "grpc.health.v1.Health",
    )
    assert sorted(served - set(CONTROL_PLANE_ROLES)) == []


def test_every_data_plane_rpc_has_an_access_rule() -> None:
    served = _paths("modelplane.v1.InferenceService", "inference.GRPCInferenceService")
    assert sorted(served - set(DATA_PLANE_ACCESS)) == []


def test_up_creates_its_tokens_once_privately_and_the_cli_uses_them(
    tmp_path: Path, monkeypatch: object
) -> None:
    os.environ.pop("MODELPLANE_AUTH_ENABLED", None)
    settings, notes = prepare_local_auth(Settings(data_dir=tmp_path))
    assert settings.auth_enabled
    admin = read_local_token(tmp_path)
    assert admin is not None and admin.startswith("mpt_")
    assert any(admin in note for note in notes), "the admin token is shown on first start"
    folder = tmp_path / AUTH_DIR
    for name in (TOKENS_FILE, ADMIN_TOKEN_FILE):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600
    entries = read_token_file(folder / TOKENS_FILE)
    assert {(e.name, e.role.label) for e in entries} == {("admin", "admin"),
                                                          ("data-plane", "deployer")}
    assert hash_token(admin) in {e.sha256 for e in entries}

    again, notes_again = prepare_local_auth(Settings(data_dir=tmp_path))
    assert read_local_token(tmp_path) == admin
    assert not any(admin in note for note in notes_again), "shown once only"
    assert again.auth_tokens_file == folder / TOKENS_FILE

    import argparse

    args = argparse.Namespace(control="127.0.0.1:1", inference="127.0.0.1:2", data_dir=tmp_path)
    client = client_from(args)
    client.close()


def test_auth_can_be_turned_off_explicitly_and_is_not_invented() -> None:
    off = Settings(auth_enabled=False)
    assert prepare_local_auth(off)[0].auth_enabled is False
    assert with_configured_auth(Settings()).auth_enabled is False
    assert with_configured_auth(Settings(auth_tokens=["a:reader:" + "0" * 64])).auth_enabled
