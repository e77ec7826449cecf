"""SessionCache on real onnxruntime sessions over a real (temporary) artifact store."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from modelplane.domain.errors import DataLoss, InvalidArgument, NotFound
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


def _store(root: Path, data: bytes) -> tuple[ArtifactStore, str]:
    store = ArtifactStore(root)
    staged = store.write_stream([data], max_bytes=10**8)
    store.commit(staged)
    return store, staged.sha256


def _version(sha256: str, number: int = 1) -> ModelVersion:
    return ModelVersion("m", number, sha256, 0, SIG, VersionStatus.READY, "", 0)


@pytest.fixture()
def cache_and_version(tmp_path: Path) -> tuple[SessionCache, ModelVersion]:
    store, sha = _store(tmp_path, linear_model(seed=3))
    return SessionCache(store, intra_op_threads=1, inter_op_threads=1), _version(sha)


def test_run_matches_reference(cache_and_version: tuple[SessionCache, ModelVersion]) -> None:
    cache, version = cache_and_version
    model = cache.load(version)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    outputs = model.run({"x": x})
    assert list(outputs) == ["y"]
    np.testing.assert_allclose(outputs["y"], reference_linear(x, seed=3), rtol=1e-5, atol=1e-5)
    assert cache.loaded_keys() == {VersionKey("m", 1)}
    assert cache.get(VersionKey("m", 1)) is model


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"x": np.zeros((2, 16), dtype=np.float64)},
            "input 'x': expected float32 [-1, 16], got float64 [2, 16]",
        ),
        (
            {"x": np.zeros((2, 15), dtype=np.float32)},
            "input 'x': expected float32 [-1, 16], got float32 [2, 15]",
        ),
        (
            {"x": np.zeros(16, dtype=np.float32)},
            "input 'x': expected float32 [-1, 16], got float32 [16]",
        ),
        ({}, "input 'x': required, expected float32 [-1, 16]"),
        (
            {"x": np.zeros((1, 16), dtype=np.float32), "z": np.zeros(1, dtype=np.float32)},
            "input 'z': model 'm' version 1 has no such input; it takes ['x']",
        ),
    ],
)
def test_inputs_are_validated_against_the_signature(
    cache_and_version: tuple[SessionCache, ModelVersion],
    inputs: dict[str, np.ndarray],
    message: str,
) -> None:
    cache, version = cache_and_version
    with pytest.raises(InvalidArgument) as caught:
        cache.load(version).run(inputs)
    assert caught.value.message == message


def test_unknown_output_name(cache_and_version: tuple[SessionCache, ModelVersion]) -> None:
    cache, version = cache_and_version
    with pytest.raises(InvalidArgument) as caught:
        cache.load(version).run({"x": np.zeros((1, 16), dtype=np.float32)}, ["nope"])
    assert caught.value.message == (
        "output_names: model 'm' version 1 has no output 'nope'; it has ['y']"
    )


def test_loads_once_under_concurrency(cache_and_version: tuple[SessionCache, ModelVersion]) -> None:
    cache, version = cache_and_version
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.load(version))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result is results[0] for result in results)


def test_missing_artifact_is_not_found(tmp_path: Path) -> None:
    cache = SessionCache(ArtifactStore(tmp_path))
    failures = cache.ensure_loaded([_version("a" * 64)])
    assert isinstance(failures[VersionKey("m", 1)], NotFound)
    assert cache.loaded_keys() == set()


def test_corrupt_artifact_is_data_loss(tmp_path: Path) -> None:
    store, sha = _store(tmp_path, linear_model(seed=3))
    path = store.path_for(sha)
    path.chmod(0o644)
    path.write_bytes(linear_model(seed=4))
    with pytest.raises(DataLoss, match=f"artifact {sha} is corrupt"):
        SessionCache(store).load(_version(sha))


def test_evict_unreferenced(tmp_path: Path) -> None:
    store, sha = _store(tmp_path, linear_model(seed=3))
    cache = SessionCache(store)
    one, two = cache.load(_version(sha, 1)), cache.load(_version(sha, 2))
    assert cache.evict_unreferenced({VersionKey("m", 2)}) == {VersionKey("m", 1)}
    assert cache.loaded_keys() == {VersionKey("m", 2)}
    assert cache.get(VersionKey("m", 2)) is two
    # A request still holding the evicted model finishes on it.
    assert one.run({"x": np.zeros((1, 16), dtype=np.float32)})["y"].shape == (1, 4)
