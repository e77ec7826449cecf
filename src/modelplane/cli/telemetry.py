"""Telemetry commands: stats."""

from __future__ import annotations

import argparse
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import stats_table


def add_commands(sub: Any) -> None:
    cmd = sub.add_parser(
        "stats", parents=[client_options()], help="per-version request counts and latency"
    )
    cmd.add_argument("endpoint", nargs="?")
    cmd.add_argument("--window", type=int, default=60, help="seconds the percentiles cover")
    cmd.set_defaults(handler=_cmd_stats)


def _cmd_stats(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print(stats_table(client.stats(args.endpoint or "", args.window)))
    return 0
