"""Shadow and rollback commands: shadow ENDPOINT, rollback ENDPOINT."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import table, target_text
from modelplane.v1 import routing_pb2


def add_commands(sub: Any) -> None:
    common = client_options()
    cmd = sub.add_parser(
        "shadow", parents=[common],
        help="agreement of shadow versions with their primaries (summed over live replicas)",
    )
    cmd.add_argument("endpoint", nargs="?", default="", help="one endpoint (default: all)")
    cmd.set_defaults(handler=_cmd_shadow)

    cmd = sub.add_parser(
        "rollback", parents=[common],
        help="restore the endpoint's previous route revision in one step",
    )
    cmd.add_argument("endpoint")
    cmd.add_argument(
        "--expected-revision", type=int, default=0,
        help="refuse unless the current revision is this one (default: any)",
    )
    cmd.set_defaults(handler=_cmd_rollback)


def shadow_table(stats: Iterable[routing_pb2.ShadowStats]) -> str:
    rows = []
    for s in stats:
        agreement = f"{100.0 * s.agreed / s.compared:.1f}%" if s.compared else "-"
        worst = "shape differs" if math.isinf(s.max_abs_diff) else f"{s.max_abs_diff:.3g}"
        rows.append((
            s.endpoint,
            f"{s.primary_model}:{s.primary_version}",
            f"{s.shadow_model}:{s.shadow_version}",
            s.compared,
            agreement,
            f"{s.mean_abs_diff:.3g}",
            worst,
            s.errors,
            s.replicas,
        ))
    return table(
        ("ENDPOINT", "PRIMARY", "SHADOW", "COMPARED", "AGREED", "MEAN|DIFF|", "MAX|DIFF|",
         "ERRORS", "REPLICAS"),
        rows,
    )


def _cmd_shadow(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        response = client.routing.GetShadowStats(
            routing_pb2.GetShadowStatsRequest(endpoint=args.endpoint)
        )
    if not response.stats:
        where = f"endpoint {args.endpoint!r}" if args.endpoint else "any endpoint"
        print(f"no shadow comparisons yet for {where}")
        return 0
    print(shadow_table(response.stats))
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        route = client.routing.Rollback(
            routing_pb2.RollbackRequest(
                endpoint=args.endpoint, expected_revision=args.expected_revision
            )
        )
    targets = " ".join(target_text(t) for t in route.targets)
    print(f"{route.endpoint} rolled back (revision {route.revision}) -> {targets}")
    return 0
