"""Checks on what a training script logs: bounded, printable, finite."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from modelplane.domain.errors import InvalidArgument, ResourceExhausted
from modelplane.experiments.series import Columns

MAX_KEYS = 256
MAX_TEXT = 2048
# Points in one LogBatch; the client sends far fewer per call.
MAX_POINTS_PER_BATCH = 1_000_000
# The same alphabet as lineage keys, so run params and metrics become lineage as they are.
_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PATH_PART = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def validate_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidArgument(
            f"run_id: expected 1-64 characters of [A-Za-z0-9_-], got {run_id!r:.80}"
        )
    return run_id


def validate_text(field: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise InvalidArgument(f"{field}: expected at most {MAX_TEXT} characters")
    if not value.isprintable():
        raise InvalidArgument(f"{field}: expected printable text, got {value!r:.80}")
    return value


def validate_key(field: str, key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidArgument(
            f"{field}: key {key!r:.140} must be 1-128 characters of [A-Za-z0-9_.:/-]"
        )
    return key


def validate_mapping(field: str, mapping: Mapping[str, str]) -> None:
    if len(mapping) > MAX_KEYS:
        raise InvalidArgument(f"{field}: expected at most {MAX_KEYS} entries")
    for key, value in mapping.items():
        validate_key(field, key)
        validate_text(f"{field}[{key}]", value)


def validate_series(batch: Sequence[Columns]) -> int:
    """The number of points; InvalidArgument naming the first bad one."""
    total = 0
    for i, series in enumerate(batch):
        field = f"metrics[{i}]"
        validate_key(f"{field}.key", series.key)
        count = len(series.values)
        if len(series.steps) != count or len(series.timestamps_ms) != count:
            raise InvalidArgument(
                f"{field}: steps, values and timestamps_ms must have the same length, got "
                f"{len(series.steps)}, {count} and {len(series.timestamps_ms)}"
            )
        finite = np.isfinite(series.values)
        if not finite.all():
            j = int(np.argmin(finite))  # the first False
            raise InvalidArgument(
                f"{field}.values[{j}]: metric '{series.key}' expected a finite number, "
                f"got {float(series.values[j])}"
            )
        total += count
    if total > MAX_POINTS_PER_BATCH:
        raise ResourceExhausted(
            f"metrics: {total} points in one batch; at most {MAX_POINTS_PER_BATCH}"
        )
    return total


def validate_artifact_path(path: str) -> str:
    """A relative path of safe parts; it names the file inside the run, never on disk."""
    parts = path.split("/")
    if (
        not path
        or len(path) > 512
        or any(not _PATH_PART.fullmatch(p) or p in (".", "..") for p in parts)
    ):
        raise InvalidArgument(
            f"path: expected a relative path of [A-Za-z0-9_.-] parts without '..', got {path!r:.80}"
        )
    return path
