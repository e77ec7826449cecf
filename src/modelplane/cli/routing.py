"""Routing commands: route, routes (and, from cli/shadow.py, shadow and rollback)."""

from __future__ import annotations

import argparse
from typing import Any

from modelplane.cli import shadow
from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import routes_table, target_text
from modelplane.client import ShadowSpec, TargetSpec
from modelplane.v1 import routing_pb2


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
    cmd.add_argument(
        "--shadow", action="append", default=[], metavar="MODEL:VERSION=PERCENT",
        help="mirror PERCENT %% of requests to this version (answers compared, not returned)",
    )
    cmd.add_argument(
        "--fallback", metavar="MODEL:VERSION", help="answers when the picked version fails"
    )
    cmd.add_argument(
        "--sticky-input", default="", metavar="INPUT",
        help="assign requests without an x-modelplane-key by this input's value",
    )
    cmd.add_argument("--max-batch", type=int, default=0, help="batching: rows per run")
    cmd.add_argument("--max-wait-us", type=int, default=0, help="batching: wait once queued")
    cmd.set_defaults(handler=_cmd_route)

    cmd = sub.add_parser("routes", parents=[common], help="list endpoints and their routes")
    cmd.set_defaults(handler=_cmd_routes)
    shadow.add_commands(sub)


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


def parse_shadow(text: str) -> ShadowSpec:
    """``model:VERSION=PERCENT`` or ``model@ALIAS=PERCENT``."""
    spec, sep, percent_text = text.partition("=")
    try:
        percent = float(percent_text)
    except ValueError:
        percent = -1.0
    if not sep or percent < 0:
        raise ValueError(f"shadow {text!r}: expected MODEL:VERSION=PERCENT or MODEL@ALIAS=PERCENT")
    model, ref, _ = parse_target(spec)
    return (model, ref, percent)


def route_text(route: routing_pb2.Route) -> str:
    parts = [" ".join(target_text(t) for t in route.targets)]
    parts += [f"shadow {_shadow_text(s)}" for s in route.shadows]
    if route.HasField("fallback"):
        parts.append(f"fallback {target_text(route.fallback).rsplit('=', 1)[0]}")
    if route.sticky_input:
        parts.append(f"sticky by input '{route.sticky_input}'")
    return "; ".join(parts)


def _shadow_text(shadow_target: routing_pb2.ShadowTarget) -> str:
    ref = (
        f":{shadow_target.version}"
        if shadow_target.WhichOneof("ref") == "version"
        else f"@{shadow_target.alias}"
    )
    return f"{shadow_target.model}{ref}={shadow_target.percent:g}%"


def _cmd_route(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if not args.targets:
            route = client.get_route(args.endpoint)
            if route is None:
                raise ValueError(f"endpoint {args.endpoint!r} has no route")
        else:
            fallback = parse_target(args.fallback)[:2] if args.fallback else None
            route = client.set_route(
                args.endpoint,
                [parse_target(t) for t in args.targets],
                args.expected_revision,
                shadows=[parse_shadow(s) for s in args.shadow],
                fallback=fallback,
                sticky_input=args.sticky_input,
                max_batch_size=args.max_batch,
                max_wait_us=args.max_wait_us,
            )
        print(f"{route.endpoint} (revision {route.revision}) -> {route_text(route)}")
    return 0


def _cmd_routes(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print(routes_table(client.list_routes()))
    return 0
