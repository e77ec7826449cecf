"""Audit events as webhook events: which actions subscribers hear about, under what name."""

from __future__ import annotations

import json
from typing import Any

from modelplane.domain.models import AuditEvent

# Audit actions that become an event whatever their outcome.
_DIRECT = {
    "register_version": "version.registered",
    "set_alias": "alias.moved",
    "delete_alias": "alias.moved",
    "set_route": "route.changed",
    "delete_route": "route.changed",
    "archive_version": "version.retired",
    "retire_version": "version.retired",
    "promote": "version.promoted",
    "integrity_failure": "version.failed",
    "retire_endpoint": "endpoint.retired",
    "artifact_deleted": "artifact.deleted",
    # control/rollouts.py: one per transition.
    "rollout_started": "rollout.advanced",
    "rollout_advanced": "rollout.advanced",
    "rollout_promoted": "rollout.advanced",
    "rollout_rolled_back": "rollout.rolled_back",
    "rollout_aborted": "rollout.rolled_back",
    # control/alert_watch.py: when an alert starts (not while it lasts).
    "alert_drift": "alert.drift",
    "alert_accuracy": "alert.accuracy",
    "alert_latency_regression_vs_baseline": "alert.latency",
    "alert_latency_regression_vs_stable": "alert.latency",
    "alert_error_rate": "alert.latency",
}
EVENT_TYPES = (
    "version.registered",
    "version.ready",
    "version.failed",
    "version.retired",
    "version.promoted",
    "alias.moved",
    "route.changed",
    "endpoint.retired",
    "artifact.deleted",
    "rollout.advanced",
    "rollout.rolled_back",
    "alert.drift",
    "alert.accuracy",
    "alert.latency",
)


def _status_after(event: AuditEvent) -> str:
    try:
        after: Any = json.loads(event.after_json) if event.after_json else {}
    except ValueError:
        return ""
    return str(after.get("status", "")) if isinstance(after, dict) else ""


def event_type(event: AuditEvent) -> str:
    """The webhook event an audit event maps to; empty when subscribers do not hear of it."""
    action = event.action
    if action in _DIRECT:
        return _DIRECT[action]
    if action == "validate_version":
        status = _status_after(event)
        return {"READY": "version.ready", "FAILED": "version.failed"}.get(status, "")
    # Rollouts and alerts are written by their own components; match by name so
    # new actions of the same family are delivered without a table change here.
    if action.startswith("rollout"):
        if "rollback" in action or "rolled_back" in action or "abort" in action:
            return "rollout.rolled_back"
        return "rollout.advanced"
    if "drift" in action:
        return "alert.drift"
    if "accuracy" in action:
        return "alert.accuracy"
    return ""


def payload(event: AuditEvent, kind: str, delivery_id: str) -> bytes:
    def parsed(text: str) -> Any:
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text

    body = {
        "delivery_id": delivery_id,
        "event": kind,
        "audit_id": event.event_id,
        "ts_ms": event.ts_ms,
        "action": event.action,
        "subject": event.subject,
        "model": event.model,
        "endpoint": event.endpoint,
        "actor": event.actor,
        "reason": event.reason,
        "before": parsed(event.before_json),
        "after": parsed(event.after_json),
        "detail": parsed(event.detail_json),
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
