"""Webhook commands: webhooks subscribe|list|delete|deliveries."""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import print_json, table
from modelplane.v1 import webhooks_pb2


def add_commands(sub: Any) -> None:
    common = client_options()
    cmd = sub.add_parser(
        "webhooks", parents=[common], help="subscribe URLs to lifecycle events; delivery log"
    )
    cmd.add_argument("action", choices=("subscribe", "list", "delete", "deliveries"))
    cmd.add_argument("target", nargs="?", help="URL (subscribe) or subscription id")
    cmd.add_argument(
        "--event", action="append", default=[],
        help="e.g. version.ready, alert.drift (repeatable; default: every event)",
    )
    cmd.add_argument("--secret", default="", help="HMAC key (default: generated, shown once)")
    cmd.add_argument("--limit", type=int, default=0)
    cmd.add_argument("--actor", help="recorded in the audit (default: login name)")
    cmd.add_argument("--json", action="store_true")
    cmd.set_defaults(handler=_cmd_webhooks)


def _cmd_webhooks(args: argparse.Namespace) -> int:
    actor = args.actor or os.environ.get("MODELPLANE_ACTOR") or getpass.getuser()
    metadata = (("x-modelplane-actor", actor),)
    if args.action != "list" and not args.target:
        raise ValueError(f"webhooks {args.action} needs a URL or subscription id")
    with client_from(args) as client:
        stub = client.webhooks
        if args.action == "subscribe":
            created = stub.CreateSubscription(
                webhooks_pb2.CreateSubscriptionRequest(
                    url=args.target, events=args.event, secret=args.secret
                ),
                metadata=metadata,
            )
            if args.json:
                print_json(created)
            else:
                print(f"subscription {created.id} -> {created.url}")
                print(f"secret {created.secret}  (shown once: verify X-Modelplane-Signature)")
            return 0
        if args.action == "delete":
            stub.DeleteSubscription(
                webhooks_pb2.DeleteSubscriptionRequest(id=args.target), metadata=metadata
            )
            print(f"deleted subscription {args.target}")
            return 0
        if args.action == "list":
            found = list(
                stub.ListSubscriptions(webhooks_pb2.ListSubscriptionsRequest()).subscriptions
            )
            if args.json:
                print_json(found)
            else:
                rows = [(s.id, s.url, ", ".join(s.events) or "(all)") for s in found]
                print(table(("ID", "URL", "EVENTS"), rows))
            return 0
        log = list(
            stub.ListDeliveries(
                webhooks_pb2.ListDeliveriesRequest(subscription_id=args.target, limit=args.limit)
            ).deliveries
        )
    if args.json:
        print_json(log)
    else:
        lines = [
            (d.at.ToDatetime().strftime("%H:%M:%S"), d.delivery_id, d.event, d.attempt,
             d.status_code or "-", "yes" if d.delivered else "no", d.error)
            for d in log
        ]
        print(table(("AT", "DELIVERY", "EVENT", "TRY", "HTTP", "DELIVERED", "ERROR"), lines))
    return 0
