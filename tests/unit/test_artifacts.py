from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelplane.domain.errors import DataLoss, InvalidArgument, NotFound, ResourceExhausted
from modelplane.registry.artifacts import ArtifactStore

DATA = b"0123456789" * 100
SHA = hashlib.sha256(DATA).hexdigest()


def _chunks(data: bytes, size: int = 64) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_write_hashes_while_streaming_and_commit_moves_to_address(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    staged = store.write_stream(_chunks(DATA), max_bytes=10_000)
    assert staged.sha256 == SHA
    assert staged.size_bytes == len(DATA)
    assert staged.path.parent == tmp_path / "tmp"

    path = store.commit(staged)
    assert path == tmp_path / "sha256" / SHA[:2] / f"{SHA}.onnx"
    assert path.read_bytes() == DATA
    assert not staged.path.exists()
    assert store.path_for(SHA) == path
    assert store.read_verified(SHA) == DATA


def test_commit_is_idempotent_for_the_same_content(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    first = store.commit(store.write_stream(_chunks(DATA), max_bytes=10_000))
    second_staged = store.write_stream(_chunks(DATA, 7), max_bytes=10_000)
    second = store.commit(second_staged)
    assert first == second
    assert not second_staged.path.exists()
    assert _files(tmp_path) == [first]


def test_over_the_limit_is_resource_exhausted_and_leaves_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(ResourceExhausted, match="exceeds the limit of 999 bytes"):
        store.write_stream(_chunks(DATA), max_bytes=999)
    assert _files(tmp_path) == []


def test_error_raised_by_the_chunk_source_removes_the_temp_file(tmp_path: Path) -> None:
    def failing() -> Iterator[bytes]:
        yield b"partial"
        raise InvalidArgument("header: boom")

    store = ArtifactStore(tmp_path)
    with pytest.raises(InvalidArgument, match="boom"):
        store.write_stream(failing(), max_bytes=10_000)
    assert _files(tmp_path) == []


def test_discard_removes_the_staged_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    staged = store.write_stream(_chunks(DATA), max_bytes=10_000)
    store.discard(staged)
    store.discard(staged)  # twice is harmless
    assert _files(tmp_path) == []


def test_missing_artifact_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=f"artifact {SHA} not found"):
        ArtifactStore(tmp_path).read_verified(SHA)


def test_corrupted_artifact_is_data_loss(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    path = store.commit(store.write_stream(_chunks(DATA), max_bytes=10_000))
    os.chmod(path, 0o644)
    path.write_bytes(DATA[:-1] + b"X")
    with pytest.raises(DataLoss, match=f"artifact {SHA} is corrupt"):
        store.read_verified(SHA)
    with pytest.raises(DataLoss, match=f"artifact {SHA} is corrupt"):
        store.verified_path(SHA)


def test_verified_path_checks_the_content_in_chunks(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    path = store.commit(store.write_stream(_chunks(DATA), max_bytes=10_000))
    assert store.verified_path(SHA) == path
    with pytest.raises(NotFound, match="not found"):
        store.verified_path("0" * 64)


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "ab" * 31, "AB" * 32, "g" * 64, SHA + "0", "", "ab/" + SHA[3:]]
)
def test_non_hex_addresses_are_rejected(tmp_path: Path, bad: str) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(InvalidArgument, match="sha256: expected 64 lower-case hex characters"):
        store.path_for(bad)
    with pytest.raises(InvalidArgument):
        store.read_verified(bad)
