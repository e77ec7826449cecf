"""Registering from a URI: only under allow-listed roots and schemes (default: none).

The URI is refused rather than repaired whenever it is unusual: a backslash,
any percent-encoding, NUL or control characters, ``.``/``..`` or empty path
segments (``//proc/self/root``), a host other than localhost, a relative path.
What remains is walked from an allowed root one component at a time with
``lstat``, refusing symlinks anywhere on the way, so no later resolution can
lead outside. The file is then opened with ``O_NOFOLLOW`` and must be the same
inode that was checked, a regular file with a single link.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from modelplane.domain.errors import FailedPrecondition, InvalidArgument

MAX_URI = 4096
CHUNK = 1 << 20


@dataclass(frozen=True)
class SourcePolicy:
    roots: tuple[Path, ...] = ()
    schemes: tuple[str, ...] = ()

    @classmethod
    def of(cls, roots: Sequence[Path | str], schemes: Sequence[str]) -> SourcePolicy:
        # Roots are resolved once, here, by the operator's configuration; a
        # symlinked root is the operator's choice, a symlink below it is not.
        return cls(tuple(Path(r).resolve() for r in roots), tuple(s.lower() for s in schemes))

    @property
    def enabled(self) -> bool:
        return bool(self.roots and self.schemes)


def _refuse(uri: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"source_uri: {uri!r:.120} {why}")


def resolve_source(uri: str, policy: SourcePolicy) -> Path:
    """The checked local path ``uri`` names; InvalidArgument / FailedPrecondition otherwise."""
    if not policy.enabled:
        raise FailedPrecondition(
            "source_uri: registration from a URI is disabled on this server "
            "(no allowed roots and schemes); stream the file instead"
        )
    if len(uri) > MAX_URI:
        raise InvalidArgument(f"source_uri: expected at most {MAX_URI} characters")
    if any(ord(ch) < 0x20 or ch in "\\%\x7f" for ch in uri):
        raise _refuse(uri, "contains a backslash, percent-encoding or control character")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower() or "file"
    if scheme not in policy.schemes or scheme != "file":
        raise _refuse(uri, f"uses scheme {scheme!r}; allowed: {', '.join(policy.schemes)}")
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise _refuse(uri, "must be file:///absolute/path with no host, query or fragment")
    raw = parts.path if parts.scheme else uri
    if not raw.startswith("/"):
        raise _refuse(uri, "is not an absolute path")
    segments = raw.split("/")[1:]
    if any(segment in ("", ".", "..") for segment in segments):
        raise _refuse(uri, "has an empty, '.' or '..' path segment")
    path = Path(raw)
    root = next((r for r in policy.roots if path.is_relative_to(r)), None)
    if root is None:
        raise _refuse(uri, "is not under an allowed root")
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            raise _refuse(uri, "does not exist") from None
        if stat.S_ISLNK(info.st_mode):
            raise _refuse(uri, f"goes through a symlink ({current.name!r})")
    if current == root or not stat.S_ISREG(info.st_mode):
        raise _refuse(uri, "is not a regular file")
    if info.st_nlink != 1:
        raise _refuse(uri, "is a hardlink")
    return current


def read_source(path: Path) -> Iterator[bytes]:
    """The file's bytes in chunks, from the inode that was checked."""
    expected = os.lstat(path)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as file:
        opened = os.fstat(file.fileno())
        if (opened.st_dev, opened.st_ino) != (expected.st_dev, expected.st_ino):
            raise InvalidArgument(f"source_uri: {str(path)!r:.120} changed while it was opened")
        while chunk := file.read(CHUNK):
            yield chunk
