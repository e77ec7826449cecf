"""Audit commands: ``audit [filters]`` and ``audit at ENDPOINT TIME``."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import audit_table, print_json, served_at_text


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from ISO 8601 (local time if no zone), epoch
    seconds, ``now`` or a relative ``-15m`` / ``-2h`` / ``-1d``."""
    text = text.strip()
    if text == "now":
        return int(time.time() * 1000)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text.startswith("-") and text[-1:] in units and text[1:-1].isdigit():
        return int((time.time() - int(text[1:-1]) * units[text[-1]]) * 1000)
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"time {text!r}: expected ISO 8601 (2024-05-01T12:00:00), epoch seconds, "
            "'now' or a relative -15m / -2h / -1d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


def add_commands(sub: Any) -> None:
    cmd = sub.add_parser(
        "audit",
        parents=[client_options()],
        help="query the audit trail, or `audit at ENDPOINT TIME`",
        description="`modelplane audit [--model M] [--endpoint E] [--actor A] [--since T] "
        "[--until T]` lists events; `modelplane audit at ENDPOINT TIME` says which "
        "versions the endpoint served then.",
    )
    cmd.add_argument("at", nargs="*", metavar="at ENDPOINT TIME")
    cmd.add_argument("--model", default="")
    cmd.add_argument("--endpoint", default="")
    cmd.add_argument("--actor", default="")
    cmd.add_argument("--action", default="", help="e.g. set_alias, set_route, register_version")
    cmd.add_argument("--since", help="ISO time, epoch seconds or -1h")
    cmd.add_argument("--until", help="ISO time, epoch seconds or -1h")
    cmd.add_argument("--limit", type=int, default=1000)
    cmd.add_argument("--json", action="store_true")
    cmd.set_defaults(handler=_cmd_audit)


def _cmd_audit(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.at:
            if len(args.at) != 3 or args.at[0] != "at":
                raise ValueError("expected `audit at ENDPOINT TIME`")
            served = client.served_at(args.at[1], parse_time(args.at[2]))
            print_json(served) if args.json else print(served_at_text(served))
            return 0
        events = client.audit(
            model=args.model,
            endpoint=args.endpoint,
            actor=args.actor,
            action=args.action,
            since_ms=parse_time(args.since) if args.since else None,
            until_ms=parse_time(args.until) if args.until else None,
            limit=args.limit,
        )
    print_json(events) if args.json else print(audit_table(events))
    return 0
