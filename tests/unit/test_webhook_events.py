"""Which audit actions become webhook events, and the signature a receiver checks."""

from __future__ import annotations

import json

from modelplane.domain.models import AuditEvent
from modelplane.webhooks.events import event_type, payload
from modelplane.webhooks.signing import sign, verify


def _event(action: str, after: str = "") -> AuditEvent:
    return AuditEvent("1-0", 5, 1, action, "model/fraud", "ci", "", "", after, "{}", "fraud", "")


def test_actions_map_to_event_types() -> None:
    assert event_type(_event("register_version")) == "version.registered"
    assert event_type(_event("validate_version", '{"status":"READY"}')) == "version.ready"
    assert event_type(_event("validate_version", '{"status":"FAILED"}')) == "version.failed"
    assert event_type(_event("set_alias")) == "alias.moved"
    assert event_type(_event("set_route")) == "route.changed"
    assert event_type(_event("archive_version")) == "version.retired"
    assert event_type(_event("rollout_rollback")) == "rollout.rolled_back"
    assert event_type(_event("rollout_step")) == "rollout.advanced"
    assert event_type(_event("drift_alert")) == "alert.drift"
    assert event_type(_event("start_run")) == ""


def test_payload_and_signature() -> None:
    body = payload(_event("set_alias", '{"version":3}'), "alias.moved", "sub-1-0")
    assert json.loads(body)["after"] == {"version": 3}
    header = sign("key-key-key-key-1", 1_000, body)
    assert header.startswith("t=1000,v1=")
    assert verify("key-key-key-key-1", header, body, now=1_100)
    assert not verify("key-key-key-key-1", header, body + b" ", now=1_100)
    assert not verify("key-key-key-key-1", header, body, now=2_000)  # too old: a replay
    assert not verify("key-key-key-key-1", "garbage", body, now=1_000)
