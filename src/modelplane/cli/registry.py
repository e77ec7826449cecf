"""Registry commands: register, models, versions, alias."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import models_table, versions_table


def add_commands(sub: Any) -> None:
    common = client_options()
    cmd = sub.add_parser(
        "register", parents=[common], help="register an ONNX file as a new version"
    )
    cmd.add_argument("model")
    cmd.add_argument("file")
    cmd.add_argument("--description", default="")
    cmd.add_argument("--no-create", action="store_true", help="fail if the model does not exist")
    cmd.set_defaults(handler=_cmd_register)

    cmd = sub.add_parser("models", parents=[common], help="list models")
    cmd.set_defaults(handler=_cmd_models)

    cmd = sub.add_parser("versions", parents=[common], help="list a model's versions")
    cmd.add_argument("model")
    cmd.set_defaults(handler=_cmd_versions)

    cmd = sub.add_parser("alias", parents=[common], help="set, get or delete an alias")
    cmd.add_argument("action", choices=("set", "get", "delete"))
    cmd.add_argument("model")
    cmd.add_argument("alias")
    cmd.add_argument("version", nargs="?", type=int)
    cmd.set_defaults(handler=_cmd_alias)


def _cmd_register(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        version = client.register(
            args.model, Path(args.file), description=args.description,
            create_model=not args.no_create,
        )
        print(versions_table([version]))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print(models_table(client.list_models()))
    return 0


def _cmd_versions(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print(versions_table(client.list_versions(args.model)))
    return 0


def _cmd_alias(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        if args.action == "set":
            if args.version is None:
                raise ValueError("alias set needs a VERSION")
            alias = client.set_alias(args.model, args.alias, args.version)
        elif args.action == "get":
            alias = client.get_alias(args.model, args.alias)
        else:
            client.delete_alias(args.model, args.alias)
            print(f"deleted alias {args.model}@{args.alias}")
            return 0
        print(f"{alias.model}@{alias.alias} -> v{alias.version}")
    return 0
