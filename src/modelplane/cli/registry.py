"""Registry commands: register, models, versions, version, archive (alias retire),
delete-version, verify, alias."""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import (
    alias_history_table,
    lineage_text,
    models_table,
    print_json,
    versions_table,
)
from modelplane.v1 import registry_pb2


def audit_options() -> argparse.ArgumentParser:
    """--actor / --reason for commands that change something (recorded in the audit)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--actor", help="who is acting (default: $MODELPLANE_ACTOR or the login name)"
    )
    options.add_argument("--reason", default="", help="why, for the audit trail")
    return options


def actor_of(args: argparse.Namespace) -> str:
    return str(args.actor or os.environ.get("MODELPLANE_ACTOR") or getpass.getuser())


def parse_pairs(pairs: list[str], flag: str) -> dict[str, str]:
    """KEY=VALUE strings into a dict; ValueError naming the flag on a bad one."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def lineage_from(args: argparse.Namespace) -> registry_pb2.Lineage:
    metrics: dict[str, float] = {}
    for key, value in parse_pairs(args.metric, "--metric").items():
        try:
            metrics[key] = float(value)
        except ValueError:
            raise ValueError(f"--metric {key}={value}: expected a number") from None
    return registry_pb2.Lineage(
        source_run_id=args.run_id,
        dataset_uri=args.dataset_uri,
        dataset_hash=args.dataset_hash,
        params=parse_pairs(args.param, "--param"),
        metrics=metrics,
        code_commit=args.commit,
        parent_version=args.parent,
        tags=parse_pairs(args.tag, "--tag"),
    )


def add_commands(sub: Any) -> None:
    common = client_options()
    audit = audit_options()
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON for scripts")

    cmd = sub.add_parser(
        "register", parents=[common, audit], help="register an ONNX file as a new version"
    )
    cmd.add_argument("model")
    cmd.add_argument("file", nargs="?", help="ONNX file to upload (omit with --source-uri)")
    cmd.add_argument("--from-run", default="", metavar="RUN_ID",
                     help="register the run's ONNX artifact, lineage filled from the run")
    cmd.add_argument("--artifact-path", default="", help="with --from-run: which artifact")
    cmd.add_argument("--description", default="")
    cmd.add_argument("--no-create", action="store_true", help="fail if the model does not exist")
    cmd.add_argument("--source-uri", default="", help="register a server-side file:// URI")
    cmd.add_argument("--run-id", default="", help="training run that produced the model")
    cmd.add_argument("--dataset-uri", default="")
    cmd.add_argument("--dataset-hash", default="")
    cmd.add_argument("--commit", default="", help="code commit the model was trained from")
    cmd.add_argument("--parent", type=int, default=0, help="version this one derives from")
    cmd.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    cmd.add_argument("--metric", action="append", default=[], metavar="KEY=NUMBER")
    cmd.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    cmd.add_argument("--idempotency-key", default="", help="retries return the same version")
    cmd.add_argument("--reference", type=Path, help=".npz of input.<name>/output.<name> arrays")
    cmd.add_argument("--rtol", type=float, help="reference tolerance (default 1e-5)")
    cmd.add_argument("--atol", type=float, help="reference tolerance (default 1e-6)")
    cmd.add_argument("--json", action="store_true")
    cmd.set_defaults(handler=_cmd_register)

    cmd = sub.add_parser("models", parents=[common, json_flag], help="list models")
    cmd.set_defaults(handler=_cmd_models)

    cmd = sub.add_parser("versions", parents=[common, json_flag], help="list a model's versions")
    cmd.add_argument("model")
    cmd.add_argument(
        "--where", default="", help="filter, e.g. 'metrics.auc>0.9 and tags.team=risk'"
    )
    cmd.set_defaults(handler=_cmd_versions)

    cmd = sub.add_parser(
        "version", parents=[common, json_flag], help="one version with its lineage"
    )
    cmd.add_argument("model")
    cmd.add_argument("version", type=int)
    cmd.set_defaults(handler=_cmd_version)

    for name, aliases, help_text in (
        ("archive", ["retire"], "retire a version: ARCHIVED, kept, never served again"),
        ("delete-version", [], "delete a version no alias or route references"),
        ("verify", [], "re-hash a version's artifact; corruption marks it FAILED"),
    ):
        cmd = sub.add_parser(
            name, aliases=aliases, parents=[common, audit, json_flag], help=help_text
        )
        cmd.add_argument("model")
        cmd.add_argument("version", type=int)
        cmd.set_defaults(handler=_cmd_version_action, action=name)

    cmd = sub.add_parser(
        "alias", parents=[common, audit, json_flag], help="set, get, delete an alias or its history"
    )
    cmd.add_argument("action", choices=("set", "get", "delete", "history"))
    cmd.add_argument("model")
    cmd.add_argument("alias")
    cmd.add_argument("version", nargs="?", type=int)
    cmd.set_defaults(handler=_cmd_alias)


def _cmd_register(args: argparse.Namespace) -> int:
    if args.from_run:
        from modelplane.cli.runs import register_from_run

        return register_from_run(args, actor_of(args))
    if bool(args.file) == bool(args.source_uri):
        raise ValueError("register needs exactly one of FILE or --source-uri")
    with client_from(args) as client:
        version = client.register_version(
            args.model,
            Path(args.file) if args.file else None,
            description=args.description,
            create_model=not args.no_create,
            lineage=lineage_from(args),
            idempotency_key=args.idempotency_key,
            reference_npz=args.reference.read_bytes() if args.reference else b"",
            reference_rtol=args.rtol,
            reference_atol=args.atol,
            source_uri=args.source_uri,
            actor=actor_of(args),
            reason=args.reason,
        )
    if args.json:
        print_json(version)
    else:
        print(versions_table([version]))
        if version.status_reason:
            print(f"reason: {version.status_reason}")
    return 0 if version.status == registry_pb2.VERSION_STATUS_READY else 1


def _cmd_models(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        models = client.list_models()
    print_json(models) if args.json else print(models_table(models))
    return 0


def _cmd_versions(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        versions = client.list_versions(args.model, where=args.where)
    print_json(versions) if args.json else print(versions_table(versions, lineage=True))
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        version = client.get_version(args.model, args.version)
    if args.json:
        print_json(version)
    else:
        print(versions_table([version]))
        if version.status_reason:
            print(f"reason: {version.status_reason}")
        print(lineage_text(version))
    return 0


def _cmd_version_action(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with client_from(args) as client:
        if args.action == "archive":
            version = client.archive_version(args.model, args.version, actor, args.reason)
        elif args.action == "verify":
            version = client.verify_version(args.model, args.version, actor)
        else:
            client.delete_version(args.model, args.version, actor, args.reason)
            print(f"deleted {args.model}:{args.version}")
            return 0
    print_json(version) if args.json else print(versions_table([version]))
    return 0


def _cmd_alias(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.action == "history":
            changes = client.alias_history(args.model, args.alias)
            print_json(changes) if args.json else print(alias_history_table(changes))
            return 0
        if args.action == "set":
            if args.version is None:
                raise ValueError("alias set needs a VERSION")
            alias = client.registry.SetAlias(
                registry_pb2.SetAliasRequest(
                    model=args.model, alias=args.alias, version=args.version
                ),
                metadata=_metadata(args),
            )
        elif args.action == "get":
            alias = client.get_alias(args.model, args.alias)
        else:
            client.registry.DeleteAlias(
                registry_pb2.DeleteAliasRequest(model=args.model, alias=args.alias),
                metadata=_metadata(args),
            )
            print(f"deleted alias {args.model}@{args.alias}")
            return 0
    if args.json:
        print_json(alias)
    else:
        print(f"{alias.model}@{alias.alias} -> v{alias.version}")
    return 0


def _metadata(args: argparse.Namespace) -> tuple[tuple[str, str | bytes], ...]:
    metadata: list[tuple[str, str | bytes]] = [("x-modelplane-actor", actor_of(args))]
    if args.reason:
        metadata.append(("x-modelplane-reason", args.reason))
    return tuple(metadata)
