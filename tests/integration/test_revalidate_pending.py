"""Versions left PENDING by a control plane that stopped mid-validation are concluded later."""

from __future__ import annotations

from pathlib import Path

from modelplane.domain.models import Signature, VersionStatus
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model

_EMPTY = Signature(inputs=(), outputs=())


def _stored(artifacts: ArtifactStore, data: bytes) -> tuple[str, int]:
    staged = artifacts.write_stream([data], max_bytes=10**8)
    artifacts.commit(staged)
    return staged.sha256, staged.size_bytes


def test_pending_versions_are_validated_again_and_concluded(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    artifacts = ArtifactStore(tmp_path / "artifacts")
    store.create_model("m", "", 1)
    # What a control plane killed between recording PENDING and concluding leaves behind.
    good_sha, good_size = _stored(artifacts, linear_model(seed=4))
    bad_sha, bad_size = _stored(artifacts, b"not an onnx model at all")
    store.add_version("m", good_sha, good_size, _EMPTY, "", 2, status=VersionStatus.PENDING)
    store.add_version("m", bad_sha, bad_size, _EMPTY, "", 3, status=VersionStatus.PENDING)

    concluded = Registry(store, artifacts).revalidate_pending()

    assert sorted(v.version for v in concluded) == [1, 2]
    good, bad = store.get_version("m", 1), store.get_version("m", 2)
    assert good.status is VersionStatus.READY
    assert [spec.name for spec in good.signature.inputs] == ["x"]
    assert bad.status is VersionStatus.FAILED and bad.status_reason
    # Nothing is left to conclude the second time.
    assert Registry(store, artifacts).revalidate_pending() == []
