"""Rebuilds aliases and routes from the audit stream alone.

The proof that the audit trail is complete: replaying every event from an
empty registry must give exactly the aliases and routes the store holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from modelplane.domain.models import AuditEvent, RouteTarget
from modelplane.registry.records import targets_from_record


def replay(
    events: Iterable[AuditEvent],
) -> tuple[dict[tuple[str, str], int], dict[str, tuple[RouteTarget, ...]]]:
    """(model, alias) -> version and endpoint -> targets after applying ``events`` in order."""
    aliases: dict[tuple[str, str], int] = {}
    routes: dict[str, tuple[RouteTarget, ...]] = {}
    for event in events:
        parts = event.subject.split("/")
        if event.action == "set_alias":
            aliases[(parts[1], parts[3])] = int(json.loads(event.after_json)["version"])
        elif event.action == "delete_alias":
            aliases.pop((parts[1], parts[3]), None)
        elif event.action == "set_route":
            after = json.loads(event.after_json)
            routes[parts[1]] = targets_from_record(json.dumps(after["targets"]))
        elif event.action in ("delete_route", "retire_endpoint"):
            routes.pop(parts[1], None)
    return aliases, routes
