"""Environment and promotion commands: env set|get|list, promote, promotions."""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Iterable
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import print_json, table
from modelplane.v1 import experiments_pb2


def _pairs(pairs: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{flag} {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _metadata(args: argparse.Namespace) -> tuple[tuple[str, str | bytes], ...]:
    actor = args.actor or os.environ.get("MODELPLANE_ACTOR") or getpass.getuser()
    metadata: list[tuple[str, str | bytes]] = [("x-modelplane-actor", actor)]
    if args.reason:
        metadata.append(("x-modelplane-reason", args.reason))
    return tuple(metadata)


def add_commands(sub: Any) -> None:
    common = client_options()
    audit = argparse.ArgumentParser(add_help=False)
    audit.add_argument("--actor", help="who approves (default: $MODELPLANE_ACTOR or login)")
    audit.add_argument("--reason", default="", help="why, for the audit trail")
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON for scripts")

    cmd = sub.add_parser(
        "env", parents=[common, audit, json_flag], help="define, show or list environments"
    )
    cmd.add_argument("action", choices=("set", "get", "list"))
    cmd.add_argument("name", nargs="?")
    cmd.add_argument(
        "--endpoint", action="append", default=[], metavar="LOGICAL=ENDPOINT",
        help="e.g. fraud=staging-fraud (repeatable)",
    )
    cmd.add_argument("--serving-group", default="")
    cmd.add_argument("--description", default="")
    cmd.set_defaults(handler=_cmd_env)

    cmd = sub.add_parser(
        "promote",
        parents=[common, audit, json_flag],
        help="copy a version's route from one environment to another when the gates pass",
    )
    cmd.add_argument("model")
    cmd.add_argument("version", type=int)
    cmd.add_argument("--from", dest="from_env", required=True, metavar="ENV")
    cmd.add_argument("--to", dest="to_env", required=True, metavar="ENV")
    cmd.add_argument("--endpoint", default="", help="logical endpoint (default: the one serving)")
    cmd.add_argument(
        "--min-metric", action="append", default=[], metavar="KEY=NUMBER",
        help="the version's lineage must show at least this (repeatable)",
    )
    cmd.add_argument(
        "--min-soak", type=int, default=0, metavar="SECONDS",
        help="served in the source environment at least this long",
    )
    cmd.add_argument("--dry-run", action="store_true", help="check the gates, change nothing")
    cmd.set_defaults(handler=_cmd_promote)

    cmd = sub.add_parser("promotions", parents=[common, json_flag], help="promotion history")
    cmd.add_argument("--model", default="")
    cmd.add_argument("--limit", type=int, default=0)
    cmd.set_defaults(handler=_cmd_promotions)


def environments_table(environments: Iterable[experiments_pb2.Environment]) -> str:
    rows = [
        (
            e.name,
            ", ".join(f"{k}->{v}" for k, v in sorted(e.endpoints.items())) or "-",
            e.serving_group or "-",
            e.description,
        )
        for e in environments
    ]
    return table(("ENVIRONMENT", "ENDPOINTS", "SERVING GROUP", "DESCRIPTION"), rows)


def gates_table(promotion: experiments_pb2.Promotion) -> str:
    rows = [(g.gate, "pass" if g.passed else "FAIL", g.detail) for g in promotion.gates]
    return table(("GATE", "RESULT", "DETAIL"), rows)


def _cmd_env(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        stub = client.environments
        if args.action == "list":
            found = list(
                stub.ListEnvironments(experiments_pb2.ListEnvironmentsRequest()).environments
            )
            print_json(found) if args.json else print(environments_table(found))
            return 0
        if not args.name:
            raise ValueError(f"env {args.action} needs a NAME")
        if args.action == "get":
            env = stub.GetEnvironment(experiments_pb2.GetEnvironmentRequest(name=args.name))
        else:
            wanted = experiments_pb2.Environment(
                name=args.name,
                endpoints=_pairs(args.endpoint, "--endpoint"),
                serving_group=args.serving_group,
                description=args.description,
            )
            env = stub.SetEnvironment(
                experiments_pb2.SetEnvironmentRequest(environment=wanted),
                metadata=_metadata(args),
            )
    print_json(env) if args.json else print(environments_table([env]))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    minimums: dict[str, float] = {}
    for key, value in _pairs(args.min_metric, "--min-metric").items():
        try:
            minimums[key] = float(value)
        except ValueError:
            raise ValueError(f"--min-metric {key}={value}: expected a number") from None
    request = experiments_pb2.PromoteRequest(
        model=args.model,
        version=args.version,
        from_environment=args.from_env,
        to_environment=args.to_env,
        endpoint=args.endpoint,
        min_metrics=minimums,
        min_soak_seconds=args.min_soak,
        dry_run=args.dry_run,
    )
    with client_from(args) as client:
        promotion = client.environments.Promote(request, metadata=_metadata(args))
    if args.json:
        print_json(promotion)
        return 0
    print(gates_table(promotion))
    passed = all(g.passed for g in promotion.gates)
    if promotion.dry_run:
        print(f"dry run: the promotion would {'pass' if passed else 'be refused'}")
        return 0 if passed else 1
    print(
        f"promoted {promotion.model}:{promotion.version} to {promotion.to_environment} "
        f"({promotion.to_endpoint} revision {promotion.route.revision}), "
        f"approved by {promotion.actor}"
    )
    return 0


def _cmd_promotions(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        found = list(
            client.environments.ListPromotions(
                experiments_pb2.ListPromotionsRequest(model=args.model, limit=args.limit)
            ).promotions
        )
    if args.json:
        print_json(found)
        return 0
    rows = [
        (
            p.promoted_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
            f"{p.model}:{p.version}",
            f"{p.from_environment}->{p.to_environment}",
            p.to_endpoint,
            "promoted" if p.HasField("route") else "refused",
            p.actor,
            p.reason,
        )
        for p in found
    ]
    print(table(("WHEN", "VERSION", "ENVIRONMENTS", "ENDPOINT", "OUTCOME", "BY", "REASON"), rows))
    return 0
