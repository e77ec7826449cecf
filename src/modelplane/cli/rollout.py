"""Rollout commands: start an SLO-gated rollout, watch, promote or abort it."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.v1 import rollout_pb2

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds from ``60s``, ``2m``, ``500ms``, ``1h`` or a bare number of seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"interval: expected e.g. 60s, 2m, 500ms, got {text!r}")
    return float(match.group(1)) * _SCALE[match.group(2)]


def parse_steps(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"steps: expected comma-separated percentages, got {text!r}") from None


def parse_version(text: str) -> tuple[str, int]:
    """``3`` or ``model:3`` -> (model or "", 3)."""
    model, _, number = text.rpartition(":")
    try:
        return model, int(number)
    except ValueError:
        raise ValueError(f"--to: expected VERSION or MODEL:VERSION, got {text!r}") from None


def add_commands(sub: Any) -> None:
    rollout = sub.add_parser("rollout", help="SLO-gated rollouts with automatic rollback")
    commands = rollout.add_subparsers(metavar="ACTION")

    cmd = commands.add_parser(
        "start", parents=[client_options()], help="move ENDPOINT to a version step by step"
    )
    cmd.add_argument("endpoint")
    cmd.add_argument("--to", required=True, help="VERSION or MODEL:VERSION")
    cmd.add_argument("--steps", default="5,25,50,100", help="canary weights, ending at 100")
    cmd.add_argument("--interval", default="60s", help="time per step, e.g. 60s, 2m")
    cmd.add_argument("--max-p99-ratio", type=float, default=1.2,
                     help="canary / stable p99 (p90 below 200 requests per step)")
    cmd.add_argument("--max-error-rate", type=float, default=0.01)
    cmd.add_argument("--min-accuracy-delta", type=float, default=None)
    cmd.add_argument("--min-requests", type=int, default=0,
                     help="canary requests needed per step before judging (20)")
    cmd.set_defaults(handler=_cmd_start)

    for name, help_text, handler in (
        ("status", "where the rollout stands, and its history", _cmd_status),
        ("promote", "skip the remaining steps: the canary takes all traffic", _cmd_promote),
        ("abort", "stop and send all traffic back to the stable version", _cmd_abort),
    ):
        cmd = commands.add_parser(name, parents=[client_options()], help=help_text)
        cmd.add_argument("endpoint")
        cmd.set_defaults(handler=handler)


def start_request(args: argparse.Namespace) -> rollout_pb2.StartRolloutRequest:
    model, version = parse_version(args.to)
    gates = rollout_pb2.RolloutGates(
        max_p99_ratio=args.max_p99_ratio,
        max_error_rate=args.max_error_rate,
        min_requests=args.min_requests,
    )
    if args.min_accuracy_delta is not None:
        gates.min_accuracy_delta = args.min_accuracy_delta
    return rollout_pb2.StartRolloutRequest(
        endpoint=args.endpoint,
        model=model,
        version=version,
        steps=parse_steps(args.steps),
        interval_seconds=parse_duration(args.interval),
        gates=gates,
    )


def rollout_text(rollout: rollout_pb2.Rollout) -> str:
    steps = ",".join(str(s) for s in rollout.steps)
    lines = [
        f"{rollout.endpoint}: {rollout.model}:{rollout.stable_version} -> "
        f"{rollout.model}:{rollout.canary_version}  {rollout.state}  "
        f"canary {rollout.canary_weight}%  (steps {steps}, {rollout.interval_seconds:g}s each)",
        f"gates: p99 <= {rollout.gates.max_p99_ratio:g}x stable, errors <= "
        f"{rollout.gates.max_error_rate:.2%}"
        + (
            f", accuracy delta >= {rollout.gates.min_accuracy_delta:+g}"
            if rollout.gates.HasField("min_accuracy_delta")
            else ""
        ),
    ]
    if rollout.reason:
        lines.append(f"last: {rollout.reason}")
    for event in rollout.history:
        when = datetime.fromtimestamp(event.ts_ms / 1000, UTC).strftime("%H:%M:%S")
        lines.append(f"  {when} {event.action:<11} {event.canary_weight:>3}%  {event.reason}")
    return "\n".join(lines)


def _cmd_start(args: argparse.Namespace) -> int:
    request = start_request(args)
    with client_from(args) as client:
        print(rollout_text(client.rollouts.StartRollout(request)))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        rollout = client.rollouts.GetRollout(rollout_pb2.GetRolloutRequest(endpoint=args.endpoint))
    print(rollout_text(rollout))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        rollout = client.rollouts.PromoteRollout(
            rollout_pb2.GetRolloutRequest(endpoint=args.endpoint)
        )
    print(rollout_text(rollout))
    return 0


def _cmd_abort(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        rollout = client.rollouts.AbortRollout(
            rollout_pb2.GetRolloutRequest(endpoint=args.endpoint)
        )
    print(rollout_text(rollout))
    return 0
