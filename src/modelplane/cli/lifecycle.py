"""Lifecycle commands: retire-endpoint, gc-artifacts (retiring a version is ``archive``)."""

from __future__ import annotations

import argparse
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import print_json
from modelplane.cli.registry import actor_of, audit_options
from modelplane.v1 import registry_pb2


def add_commands(sub: Any) -> None:
    common = client_options()
    audit = audit_options()

    cmd = sub.add_parser(
        "retire-endpoint", parents=[common, audit],
        help="take an endpoint out of serving for good (history and audit stay)",
    )
    cmd.add_argument("endpoint")
    cmd.add_argument(
        "--expected-revision", type=int, default=0,
        help="only if the route is at this revision (default: whatever it is)",
    )
    cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    cmd.set_defaults(handler=_cmd_retire_endpoint)

    cmd = sub.add_parser(
        "gc-artifacts", parents=[common, audit],
        help="delete artifacts of archived versions the retention policy does not keep",
    )
    cmd.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted; delete nothing"
    )
    cmd.add_argument("--json", action="store_true", help="print JSON for scripts")
    cmd.set_defaults(handler=_cmd_gc_artifacts)


def _metadata(args: argparse.Namespace) -> tuple[tuple[str, str | bytes], ...]:
    metadata: list[tuple[str, str | bytes]] = [("x-modelplane-actor", actor_of(args))]
    if args.reason:
        metadata.append(("x-modelplane-reason", args.reason))
    return tuple(metadata)


def _cmd_retire_endpoint(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        response = client.registry.RetireEndpoint(
            registry_pb2.RetireEndpointRequest(
                endpoint=args.endpoint, expected_revision=args.expected_revision
            ),
            metadata=_metadata(args),
        )
    if args.json:
        print_json(response)
    else:
        print(f"retired endpoint {args.endpoint} (was at revision {response.revision})")
    return 0


def gc_text(response: registry_pb2.GcArtifactsResponse) -> str:
    verb = "would purge" if response.dry_run else "purged"
    lines = [
        f"{verb} {entry.model}:{entry.version} {entry.sha256[:12]} "
        f"({entry.size_bytes} bytes)"
        for entry in response.purged
    ]
    lines += [
        f"kept {entry.model}:{entry.version}: {entry.kept_because}" for entry in response.kept
    ]
    freed = "would free" if response.dry_run else "freed"
    lines.append(f"{len(response.purged)} version(s) {verb}, {freed} {response.bytes_freed} bytes")
    return "\n".join(lines)


def _cmd_gc_artifacts(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        response = client.registry.GcArtifacts(
            registry_pb2.GcArtifactsRequest(dry_run=args.dry_run), metadata=_metadata(args)
        )
    print_json(response) if args.json else print(gc_text(response))
    return 0
