"""Checks that a model's external-data references stay inside its own artifact.

ONNX tensors may keep their bytes in another file named by a relative
``location`` with an ``offset`` and ``length``. A hostile model can point that
at ``/etc/shadow``, ``../../secret``, a symlink or a hardlink to a file outside,
or at a range past the end of a file. Every reference is checked here before
anything opens it; the first problem found is raised as InvalidArgument.
Pure file-system logic: no onnx import, so it is tested on plain files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelplane.domain.errors import InvalidArgument


@dataclass(frozen=True)
class ExternalRef:
    tensor: str
    location: str
    offset: int
    length: int | None


def parse_entries(tensor: str, entries: Mapping[str, str]) -> ExternalRef:
    """An ExternalRef from a tensor's ``external_data`` key/value entries."""
    where = f"external data of tensor {tensor!r}"
    location = entries.get("location", "")
    offset = length = None
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise InvalidArgument(f"{where}: offset and length must be integers") from None
    if offset < 0 or (length is not None and length < 0):
        raise InvalidArgument(f"{where}: offset and length must not be negative")
    return ExternalRef(tensor, location, offset, length)


def _check_location(ref: ExternalRef) -> PurePosixPath:
    where = f"external data of tensor {ref.tensor!r}"
    location = ref.location
    if not location:
        raise InvalidArgument(f"{where}: empty location")
    if "\x00" in location or "\\" in location or "%" in location:
        raise InvalidArgument(f"{where}: location {location!r:.80} has a forbidden character")
    path = PurePosixPath(location)
    if path.is_absolute() or (len(location) > 1 and location[1] == ":"):
        raise InvalidArgument(f"{where}: location {location!r:.80} is absolute")
    if any(part in ("..", ".") for part in location.split("/")) or "//" in location:
        raise InvalidArgument(f"{where}: location {location!r:.80} leaves the artifact")
    return path


def check_external_refs(refs: Iterable[ExternalRef], base_dir: Path | None) -> None:
    """Each reference must name a plain, single-linked file under ``base_dir``.

    ``base_dir`` None means the artifact is one file: every reference fails,
    after the checks above so that an escape attempt is named as such.
    """
    for ref in refs:
        relative = _check_location(ref)
        where = f"external data of tensor {ref.tensor!r}"
        if base_dir is None:
            raise InvalidArgument(
                f"{where}: names file {ref.location!r:.80}, which is not part of the "
                "artifact; upload a self-contained model (external data inlined)"
            )
        current = base_dir
        for part in relative.parts:
            current = current / part
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                raise InvalidArgument(
                    f"{where}: file {ref.location!r:.80} not found in the artifact"
                ) from None
            if stat.S_ISLNK(info.st_mode):
                raise InvalidArgument(f"{where}: {ref.location!r:.80} goes through a symlink")
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument(f"{where}: {ref.location!r:.80} is not a regular file")
        if info.st_nlink != 1:
            raise InvalidArgument(f"{where}: {ref.location!r:.80} is a hardlink")
        end = ref.offset + (ref.length if ref.length is not None else 0)
        if ref.offset > info.st_size or end > info.st_size:
            raise InvalidArgument(
                f"{where}: range offset={ref.offset} length={ref.length} is past the end "
                f"of {ref.location!r:.80} ({info.st_size} bytes)"
            )
