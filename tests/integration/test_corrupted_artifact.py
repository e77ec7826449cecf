"""A corrupted artifact is refused with DATA_LOSS; the version already loaded keeps serving."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from modelplane.domain.errors import DataLoss
from modelplane.domain.models import VersionStatus
from modelplane.registry.artifacts import ArtifactStore
from modelplane.serving.sessions import SessionCache
from modelplane.v1 import inference_pb2_grpc
from tests.integration.serving_plane import predict_request, serving_plane


def test_corruption_is_data_loss_while_the_loaded_version_keeps_serving(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    with serving_plane(redis_url, key_prefix, tmp_path) as plane:
        channel = grpc.insecure_channel(plane.address)
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        assert stub.Predict(predict_request("open"), timeout=10).version == 1

        version = plane.registry.get_version("m", 1)
        artifacts = ArtifactStore(plane.settings.resolved_artifact_root)
        path = artifacts.path_for(version.sha256)
        os.chmod(path, 0o644)  # committed artifacts are read-only; a disk fault is not
        path.write_bytes(path.read_bytes()[:-8] + b"corrupt!")

        # Any new load refuses it: another replica, a restart, a scale-up.
        fresh = SessionCache(artifacts, intra_op_threads=1, inter_op_threads=1)
        with pytest.raises(DataLoss, match="is corrupt"):
            fresh.load(version)
        # The integrity check says so, and records it in the status and the audit trail.
        with pytest.raises(DataLoss, match="integrity check failed"):
            plane.registry.verify_version("m", 1)
        assert plane.registry.get_version("m", 1).status is VersionStatus.FAILED
        assert any(
            event.action == "integrity_failure"
            for event in plane.registry.store.audit_events()
        )
        # The session loaded before the corruption keeps answering.
        for _ in range(5):
            assert stub.Predict(predict_request("open"), timeout=10).version == 1
        channel.close()
