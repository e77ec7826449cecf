"""The ``modelplane`` command.

``up`` runs the whole platform in the foreground; every other command is a thin
client of the running control and data planes. Addresses come from flags, then
``MODELPLANE_*`` variables, then the file ``up`` writes into the data dir. Each
command group lives in its own module and adds its subcommands here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

import grpc

from modelplane.cli import (
    audit,
    auth,  # `modelplane token ...`
    control_plane,
    importers,
    inference,
    lifecycle,  # `modelplane retire-endpoint`, `gc-artifacts`
    promote,
    registry,
    rollout,
    routing,
    runs,
    scale,  # `modelplane scale`, `status`, `group`
    telemetry,
    up,
    webhooks,
)

COMMAND_GROUPS = (
    up, control_plane, registry, routing, inference, telemetry, audit, runs, promote, importers,
    rollout,
    auth,
    scale,
    webhooks,
    lifecycle,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except grpc.RpcError as err:
        # The server already phrased the problem; a user never sees a stack trace.
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelplane", description="Model registry, routing and gRPC serving."
    )
    sub = parser.add_subparsers(metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser
