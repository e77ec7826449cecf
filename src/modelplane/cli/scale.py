"""Scaling commands: scale, status, group."""

from __future__ import annotations

import argparse
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.v1 import scaling_pb2


def add_commands(sub: Any) -> None:
    common = client_options()
    cmd = sub.add_parser(
        "scale", parents=[common],
        help="scale the serving group of an endpoint: --replicas N, or --min M --max N",
    )
    cmd.add_argument("endpoint", nargs="?", default="", help="endpoint whose group to scale")
    cmd.add_argument("--group", default="", help="scale this serving group instead")
    cmd.add_argument("--replicas", type=int, help="a fixed number of replicas")
    cmd.add_argument("--min", dest="min_replicas", type=int, help="autoscaling: fewest replicas")
    cmd.add_argument("--max", dest="max_replicas", type=int, help="autoscaling: most replicas")
    cmd.add_argument(
        "--target-ongoing", type=float, default=0.0,
        help="autoscaling: ongoing requests per replica to aim at (default 2)",
    )
    cmd.set_defaults(handler=_cmd_scale)

    cmd = sub.add_parser(
        "status", parents=[common],
        help="each serving group's replicas: node, readiness, loaded versions",
    )
    cmd.set_defaults(handler=_cmd_status)

    cmd = sub.add_parser(
        "group", parents=[common],
        help="create a serving group on its own port, or move endpoints into one",
    )
    cmd.add_argument("name")
    cmd.add_argument("endpoints", nargs="*", help="endpoints to serve from this group")
    cmd.add_argument("--port", type=int, default=0, help="inference port of a new group")
    cmd.set_defaults(handler=_cmd_group)


def group_line(group: scaling_pb2.ServingGroup) -> str:
    if group.HasField("autoscaling"):
        auto = group.autoscaling
        scale = (
            f"autoscaling {auto.min_replicas}..{auto.max_replicas} "
            f"(target {auto.target_ongoing_requests:g} ongoing/replica)"
        )
    else:
        scale = f"{group.replicas} replica(s)"
    endpoints = ", ".join(group.endpoints) if group.endpoints else "(all others)"
    return f"group {group.name} on port {group.inference_port}: {scale}; endpoints {endpoints}"


def status_text(status: scaling_pb2.StatusResponse) -> str:
    lines = [f"registry generation {status.generation}"]
    for entry in status.groups:
        lines.append(f"{group_line(entry.group)} [{entry.serve_status}]")
        if not entry.replicas:
            lines.append("  (no live replicas)")
        for replica in entry.replicas:
            state = "ready" if replica.ready else f"syncing (generation {replica.generation})"
            loaded = ", ".join(replica.loaded) or "-"
            lines.append(
                f"  {replica.replica_id}  node {replica.node}  {replica.address}  {state}  "
                f"loaded: {loaded}"
            )
    return "\n".join(lines)


def _cmd_scale(args: argparse.Namespace) -> int:
    autoscaling = args.min_replicas is not None or args.max_replicas is not None
    if (args.replicas is None) == (not autoscaling):
        raise ValueError("scale: give --replicas N, or --min M --max N (not both)")
    if autoscaling and (args.min_replicas is None or args.max_replicas is None):
        raise ValueError("scale: autoscaling needs both --min and --max")
    if autoscaling and (args.min_replicas < 0 or args.max_replicas < 0):
        raise ValueError("scale: --min and --max must be 0 or more")
    with client_from(args) as client:
        group = client.scale(
            args.endpoint,
            group=args.group,
            replicas=args.replicas,
            min_replicas=args.min_replicas,
            max_replicas=args.max_replicas,
            target_ongoing_requests=args.target_ongoing,
        )
    print(group_line(group))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print(status_text(client.status()))
    return 0


def _cmd_group(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print(group_line(client.put_serving_group(args.name, args.port, args.endpoints)))
    return 0
