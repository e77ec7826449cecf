"""Routing commands: route, routes."""

from __future__ import annotations

import argparse
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import routes_table, target_text
from modelplane.client import TargetSpec


def add_commands(sub: Any) -> None:
    common = client_options()
    cmd = sub.add_parser(
        "route", parents=[common],
        help="show an endpoint's route, or set it: route ENDPOINT MODEL:VERSION[=WEIGHT]…",
    )
    cmd.add_argument("endpoint")
    cmd.add_argument("targets", nargs="*", help="MODEL:VERSION[=WEIGHT] or MODEL@ALIAS[=WEIGHT]")
    cmd.add_argument(
        "--expected-revision", type=int,
        help="compare-and-set against this revision (default: the current one)",
    )
    cmd.set_defaults(handler=_cmd_route)

    cmd = sub.add_parser("routes", parents=[common], help="list endpoints and their routes")
    cmd.set_defaults(handler=_cmd_routes)


def parse_target(text: str) -> TargetSpec:
    """``model:VERSION[=WEIGHT]`` or ``model@ALIAS[=WEIGHT]``; weight defaults to 100."""
    spec, _, weight_text = text.partition("=")
    if weight_text and not weight_text.isdigit():
        raise ValueError(f"target {text!r}: weight must be a whole number, got {weight_text!r}")
    weight = int(weight_text) if weight_text else 100
    if "@" in spec:
        model, _, alias = spec.partition("@")
        return (model, alias, weight)
    model, sep, version = spec.rpartition(":")
    if not sep or not version.isdigit():
        raise ValueError(
            f"target {text!r}: expected MODEL:VERSION[=WEIGHT] or MODEL@ALIAS[=WEIGHT]"
        )
    return (model, int(version), weight)


def _cmd_route(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if not args.targets:
            route = client.get_route(args.endpoint)
            if route is None:
                raise ValueError(f"endpoint {args.endpoint!r} has no route")
        else:
            route = client.set_route(
                args.endpoint, [parse_target(t) for t in args.targets], args.expected_revision
            )
        targets = " ".join(target_text(t) for t in route.targets)
        print(f"{route.endpoint} (revision {route.revision}) -> {targets}")
    return 0


def _cmd_routes(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print(routes_table(client.list_routes()))
    return 0
