"""Checks on the lineage a producer attaches to a version: bounded and printable."""

from __future__ import annotations

import math
import re

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import Lineage

MAX_ENTRIES = 256
MAX_TEXT = 2048
_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")


def _text(field: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise InvalidArgument(f"{field}: expected at most {MAX_TEXT} characters")
    if not value.isprintable():
        raise InvalidArgument(f"{field}: expected printable text, got {value!r:.80}")
    return value


def _keys(field: str, keys: list[str]) -> None:
    if len(keys) > MAX_ENTRIES:
        raise InvalidArgument(f"{field}: expected at most {MAX_ENTRIES} entries")
    for key in keys:
        if not _KEY.fullmatch(key):
            raise InvalidArgument(
                f"{field}: key {key!r:.140} must be 1-128 characters of [A-Za-z0-9_.:/-]"
            )


def validate_lineage(lineage: Lineage) -> Lineage:
    """Returns ``lineage`` unchanged when every field is within bounds."""
    for name in ("source_run_id", "dataset_uri", "dataset_hash", "code_commit"):
        _text(f"lineage.{name}", getattr(lineage, name))
    for name in ("params", "tags"):
        mapping: dict[str, str] = getattr(lineage, name)
        _keys(f"lineage.{name}", list(mapping))
        for key, value in mapping.items():
            _text(f"lineage.{name}[{key}]", value)
    _keys("lineage.metrics", list(lineage.metrics))
    for key, metric in lineage.metrics.items():
        if not math.isfinite(metric):
            raise InvalidArgument(f"lineage.metrics[{key}]: expected a finite number, got {metric}")
    if lineage.parent_version < 0:
        raise InvalidArgument(
            f"lineage.parent_version: expected 0 (none) or a version number, "
            f"got {lineage.parent_version}"
        )
    return lineage
