"""Pure lifecycle rules: retention planning, accuracy alerts, alert de-duplication,
and which audit actions webhooks deliver."""

from __future__ import annotations

from typing import Any

import pytest

from modelplane.control.alert_watch import AlertWatcher
from modelplane.domain.models import (
    AuditEvent,
    ModelVersion,
    Signature,
    VersionKey,
    VersionStatus,
)
from modelplane.registry.retention import RetentionPolicy, plan, referenced_versions
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.alerts import AccuracyPolicy, accuracy_alerts
from modelplane.telemetry.drift import BIN_COUNT, DriftTracker
from modelplane.webhooks.events import EVENT_TYPES, event_type

A, R = VersionStatus.ARCHIVED, VersionStatus.READY


def _version(number: int, status: VersionStatus, sha: str, purged: int = 0) -> ModelVersion:
    return ModelVersion(
        "m", number, sha * 64, 10 * number, Signature((), ()), status, "", 0,
        artifact_purged_at_ms=purged,
    )


def _event(action: str, subject: str = "", detail: str = "", model: str = "") -> AuditEvent:
    return AuditEvent("1-0", 1, 1, action, subject, "ci", "", "", "", detail, model, "")


def test_retention_plan() -> None:
    versions = {"m": [
        _version(1, A, "a"), _version(2, A, "b"), _version(3, A, "c"), _version(4, A, "d"),
        _version(5, R, "c"), _version(6, A, "e", purged=7), _version(7, R, "f"),
        _version(8, VersionStatus.FAILED, "g"),
    ]}
    result = plan(versions, {VersionKey("m", 2)}, RetentionPolicy(keep_last=2),
                  protected_files={"d" * 64})
    assert [d.version.version for d in result.purge] == [1]
    assert {d.version.version: d.kept_because for d in result.keep} == {
        2: "referenced in the audit within 90 days",
        3: "its file is still used by another version or a run",  # shared with READY v5
        4: "its file is still used by another version or a run",  # a run's artifact
    }
    assert result.files == {"a" * 64: 10} and result.bytes_freed == 10
    # keep_last larger than the model keeps everything; 0 keeps nothing by recency.
    assert plan(versions, set(), RetentionPolicy(keep_last=50)).purge == ()
    assert [d.version.version for d in plan(versions, set(), RetentionPolicy(keep_last=0)).purge
            ] == [1, 2, 4]
    with pytest.raises(ValueError, match="retention_keep_last: expected >= 0, got -1"):
        RetentionPolicy(keep_last=-1)


def test_referenced_versions_from_subjects_routes_and_aliases() -> None:
    events = [
        _event("archive_version", "model/m/version/3", model="m"),
        _event("set_route", "endpoint/e",
               '{"targets":[{"model":"n","version":4,"weight":1}],'
               '"policy":{"fallback":{"model":"m","version":9}}}'),
        _event("set_alias", "model/m/alias/prod", '{"version":5,"previous":2}', model="m"),
        _event("create_model", "model/m", "not json"),
    ]
    assert referenced_versions(events) == {
        VersionKey("m", 3), VersionKey("n", 4), VersionKey("m", 9), VersionKey("m", 5),
    }


def test_accuracy_alert_against_the_most_labelled_version() -> None:
    quality: dict[tuple[str, str, int], tuple[int, float | None, float | None]] = {
        ("e", "m", 1): (100, 0.90, None),
        ("e", "m", 2): (30, 0.80, None),  # 0.10 below: alert
        ("e", "m", 3): (30, 0.88, None),  # 0.02 below: fine
        ("e", "m", 4): (5, 0.10, None),  # too few labels to judge
    }
    (alert,) = accuracy_alerts(quality, AccuracyPolicy(max_drop=0.05, min_feedback=20))
    assert (alert.kind, alert.endpoint, alert.model, alert.version) == ("accuracy", "e", "m", 2)
    assert alert.message == (
        "accuracy 0.800 over 30 labels is 0.100 below m:1 (0.900 over 100 labels)"
    )


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def record_event(self, action: str, subject: str, **kwargs: Any) -> str:
        self.events.append((action, subject, kwargs))
        return "1-0"


def test_an_alert_is_audited_when_it_starts_and_again_only_after_it_cleared() -> None:
    now = [1000.0]
    drift = DriftTracker(baseline_count=100, window_s=10, min_recent=10, clock=lambda: now[0])
    recorder = _Recorder()
    watcher = AlertWatcher(
        recorder, StatsAggregator(), drift=drift, clock=lambda: now[0]  # type: ignore[arg-type]
    )

    def feed(bin_index: int, count: int) -> None:
        counts = [0] * BIN_COUNT
        counts[bin_index] = count
        drift.add("e", "m", 1, "x", counts, now[0])

    feed(2, 100)
    assert watcher.tick() == []
    feed(BIN_COUNT - 1, 50)
    assert [a.kind for a in watcher.tick()] == ["drift"]
    assert watcher.tick() == [] and watcher.tick() == []  # still active: not again
    assert [e[0] for e in recorder.events] == ["alert_drift"]
    assert recorder.events[0][1] == "endpoint/e/model/m/version/1"
    now[0] += 60  # the recent values age out: the alert clears
    assert watcher.tick() == []
    feed(BIN_COUNT - 1, 50)
    assert [a.kind for a in watcher.tick()] == ["drift"]  # back: a new alert
    assert [e[0] for e in recorder.events] == ["alert_drift", "alert_drift"]


def test_lifecycle_actions_map_to_events() -> None:
    expected = {
        "archive_version": "version.retired",
        "retire_endpoint": "endpoint.retired",
        "artifact_deleted": "artifact.deleted",
        "rollout_started": "rollout.advanced",
        "rollout_advanced": "rollout.advanced",
        "rollout_promoted": "rollout.advanced",
        "rollout_rolled_back": "rollout.rolled_back",
        "rollout_aborted": "rollout.rolled_back",
        "alert_drift": "alert.drift",
        "alert_accuracy": "alert.accuracy",
        "alert_error_rate": "alert.latency",
        "alert_latency_regression_vs_stable": "alert.latency",
        "delete_route": "route.changed",
    }
    for action, kind in expected.items():
        assert event_type(_event(action)) == kind, action
        assert kind in EVENT_TYPES


def test_cli_names_retirement_commands() -> None:
    from modelplane.cli import build_parser

    parser = build_parser()
    retire = parser.parse_args(["retire", "m", "1"])
    assert (retire.action, retire.model, retire.version) == ("archive", "m", 1)
    endpoint = parser.parse_args(["retire-endpoint", "scoring", "--expected-revision", "4"])
    assert (endpoint.endpoint, endpoint.expected_revision) == ("scoring", 4)
    assert parser.parse_args(["gc-artifacts", "--dry-run"]).dry_run is True
