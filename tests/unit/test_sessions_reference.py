"""A replica replays a version's reference data when it loads it, and refuses a mismatch."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest

from modelplane.domain.errors import ModelplaneError
from modelplane.domain.models import (
    DataType,
    ModelVersion,
    Signature,
    TensorSpec,
    VersionKey,
    VersionStatus,
)
from modelplane.registry.artifacts import ArtifactStore
from modelplane.sample_models import linear_model, reference_linear
from modelplane.serving.sessions import SessionCache

SIG = Signature(
    inputs=(TensorSpec("x", DataType.FLOAT32, (-1, 16)),),
    outputs=(TensorSpec("y", DataType.FLOAT32, (-1, 4)),),
)


def _put(store: ArtifactStore, data: bytes) -> str:
    staged = store.write_stream([data], max_bytes=10**8)
    store.commit(staged)
    return staged.sha256


def _npz(x: np.ndarray, y: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{"input.x": x, "output.y": y})
    return buffer.getvalue()


@pytest.fixture()
def store_and_version(tmp_path: Path) -> tuple[ArtifactStore, ModelVersion]:
    store = ArtifactStore(tmp_path)
    sha = _put(store, linear_model(seed=5))
    version = ModelVersion("m", 1, sha, 0, SIG, VersionStatus.READY, "", 0)
    return store, version


def test_matching_reference_loads(store_and_version: tuple[ArtifactStore, ModelVersion]) -> None:
    store, version = store_and_version
    x = np.ones((2, 16), np.float32)
    ref = _put(store, _npz(x, reference_linear(x, seed=5)))
    version = dataclasses.replace(
        version, reference_sha256=ref, reference_rtol=1e-4, reference_atol=1e-5
    )
    cache = SessionCache(store, intra_op_threads=1, inter_op_threads=1)
    cache.load(version)
    assert cache.loaded_keys() == {VersionKey("m", 1)}


def test_mismatching_reference_is_refused_and_never_served(
    store_and_version: tuple[ArtifactStore, ModelVersion],
) -> None:
    store, version = store_and_version
    x = np.ones((2, 16), np.float32)
    wrong = reference_linear(x, seed=5) + 1.0
    ref = _put(store, _npz(x, wrong))
    version = dataclasses.replace(
        version, reference_sha256=ref, reference_rtol=1e-4, reference_atol=1e-5
    )
    cache = SessionCache(store, intra_op_threads=1, inter_op_threads=1)
    with pytest.raises(ModelplaneError, match="reference output 'y': differs"):
        cache.load(version)
    assert cache.loaded_keys() == set()
