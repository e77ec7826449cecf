"""Which archived versions' artifacts garbage collection may delete: pure planning.

An archived (retired) version's artifact is kept when:

- it is one of its model's ``keep_last`` most recent versions (by number),
  whatever their state, so the newest retired versions stay inspectable;
- the audit trail mentions it within the last ``referenced_days`` (its own
  archiving included, which gives every retirement that much grace);
- its file is shared (artifacts are addressed by content) with a version that
  is kept, is not archived, or with anything else that must stay (run
  artifacts, reference data): the file goes only when nobody needs it.

Versions never archived are never candidates. ``plan`` decides; the use case
carries the plan out.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelplane.domain.models import AuditEvent, ModelVersion, VersionKey, VersionStatus

DEFAULT_KEEP_LAST = 3
DEFAULT_REFERENCED_DAYS = 90


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = DEFAULT_KEEP_LAST
    referenced_days: int = DEFAULT_REFERENCED_DAYS

    def __post_init__(self) -> None:
        if self.keep_last < 0:
            raise ValueError(f"retention_keep_last: expected >= 0, got {self.keep_last}")
        if self.referenced_days < 0:
            raise ValueError(
                f"retention_referenced_days: expected >= 0, got {self.referenced_days}"
            )


@dataclass(frozen=True)
class Decision:
    version: ModelVersion
    # Empty: the artifact goes; otherwise why it stays.
    kept_because: str = ""


@dataclass(frozen=True)
class GcPlan:
    purge: tuple[Decision, ...]
    keep: tuple[Decision, ...]
    # The files (sha256) deleted by carrying out ``purge``, with their sizes.
    files: Mapping[str, int]

    @property
    def bytes_freed(self) -> int:
        return sum(self.files.values())


def _refs_in(value: Any, model: str, found: set[VersionKey]) -> None:
    """Every (model, version) a JSON audit field names: targets, shadows, aliases."""
    if isinstance(value, dict):
        owner = value.get("model", model)
        number = value.get("version")
        if isinstance(owner, str) and owner and isinstance(number, int) and number > 0:
            found.add(VersionKey(owner, number))
        for item in value.values():
            _refs_in(item, model, found)
    elif isinstance(value, list):
        for item in value:
            _refs_in(item, model, found)


def referenced_versions(events: Iterable[AuditEvent]) -> set[VersionKey]:
    """The versions the given audit events name, by subject or in their JSON fields."""
    found: set[VersionKey] = set()
    for event in events:
        parts = event.subject.split("/")
        if len(parts) == 4 and parts[0] == "model" and parts[2] == "version":
            with contextlib.suppress(ValueError):
                found.add(VersionKey(parts[1], int(parts[3])))
        for text in (event.detail_json, event.before_json, event.after_json):
            if not text:
                continue
            try:
                _refs_in(json.loads(text), event.model, found)
            except ValueError:
                continue
    return found


def plan(
    versions: Mapping[str, list[ModelVersion]],
    referenced: set[VersionKey],
    policy: RetentionPolicy,
    protected_files: Iterable[str] = (),
) -> GcPlan:
    """Decides for every archived version with a stored artifact; see the module doc."""
    candidates: list[ModelVersion] = []
    keep: list[Decision] = []
    needed = set(protected_files)
    for model_versions in versions.values():
        numbers = sorted(v.version for v in model_versions)
        recent = set(numbers[max(0, len(numbers) - policy.keep_last):]) if (
            policy.keep_last
        ) else set()
        for version in model_versions:
            if version.status is not VersionStatus.ARCHIVED:
                needed.add(version.sha256)
                needed.add(version.reference_sha256)
                continue
            if version.artifact_purged_at_ms:
                continue
            if version.version in recent:
                keep.append(Decision(version, f"one of the {policy.keep_last} latest versions"))
            elif VersionKey(version.model, version.version) in referenced:
                keep.append(Decision(
                    version, f"referenced in the audit within {policy.referenced_days} days"
                ))
            else:
                candidates.append(version)
                continue
            needed.add(version.sha256)
            needed.add(version.reference_sha256)
    purge: list[Decision] = []
    files: dict[str, int] = {}
    for version in candidates:
        if version.sha256 in needed:
            keep.append(Decision(version, "its file is still used by another version or a run"))
            continue
        purge.append(Decision(version))
        files[version.sha256] = version.size_bytes
    # Reference data goes with the last version needing it.
    for decision in purge:
        ref = decision.version.reference_sha256
        if ref and ref not in needed:
            files.setdefault(ref, 0)
    return GcPlan(purge=tuple(purge), keep=tuple(keep), files=files)
