"""Content-addressed store of ONNX files under one root directory.

Layout::

    <root>/tmp/<random>                 uploads being written
    <root>/sha256/<aa>/<sha256>.onnx    committed artifacts, immutable

An upload is hashed while it is written, so the file is never held in memory
and its address is known the moment the last byte lands. Committing is an
atomic rename on the same file system: a reader sees a whole file or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modelplane.domain.errors import DataLoss, InvalidArgument, NotFound, ResourceExhausted

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def validate_sha256(sha256: str) -> str:
    # Only lower-case hex reaches the file system: no separators, no "..".
    if not _SHA256_HEX.fullmatch(sha256):
        raise InvalidArgument(f"sha256: expected 64 lower-case hex characters, got {sha256!r:.80}")
    return sha256


@dataclass(frozen=True)
class StagedArtifact:
    """A fully written upload not yet in the store."""

    path: Path
    sha256: str
    size_bytes: int


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        self._objects = self.root / "sha256"

    def path_for(self, sha256: str) -> Path:
        validate_sha256(sha256)
        return self._objects / sha256[:2] / f"{sha256}.onnx"

    def write_stream(self, chunks: Iterable[bytes], max_bytes: int) -> StagedArtifact:
        """Writes ``chunks`` to a temporary file while hashing them.

        Raises ResourceExhausted past ``max_bytes``. On any error, including one
        raised by the ``chunks`` iterator itself, the temporary file is removed.
        """
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="upload-")
        path = Path(name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise ResourceExhausted(
                            f"chunk: the upload exceeds the limit of {max_bytes} bytes"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                # The rename in commit() is only durable if the data is on disk first.
                os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedArtifact(path=path, sha256=digest.hexdigest(), size_bytes=size)

    def commit(self, staged: StagedArtifact) -> Path:
        """Moves the staged file to its address; idempotent when the content is there."""
        target = self.path_for(staged.sha256)
        if target.exists():
            # Same hash, same bytes: keep the existing file, drop the copy.
            self.discard(staged)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Artifacts are immutable and read by replicas that may run as another user.
        os.chmod(staged.path, 0o444)
        os.replace(staged.path, target)
        return target

    def discard(self, staged: StagedArtifact) -> None:
        with contextlib.suppress(FileNotFoundError):
            staged.path.unlink()

    def verified_path(self, sha256: str) -> Path:
        """The artifact's path once its content, read in chunks, matches its address.

        For loaders that read the file themselves (onnxruntime), so the model is
        never held twice in memory. Committed artifacts are read-only; the check
        and the load are close enough in time for a store nobody writes in place.
        """
        path = self.path_for(sha256)
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as file:
                while chunk := file.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            raise NotFound(f"artifact {sha256} not found under {self._objects}") from None
        actual = digest.hexdigest()
        if actual != sha256:
            raise DataLoss(f"artifact {sha256} is corrupt: its content hashes to {actual}")
        return path

    def read_verified(self, sha256: str) -> bytes:
        """The artifact's bytes, checked against its address."""
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"artifact {sha256} not found under {self._objects}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise DataLoss(f"artifact {sha256} is corrupt: its content hashes to {actual}")
        return data
