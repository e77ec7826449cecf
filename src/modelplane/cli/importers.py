"""``modelplane import mlflow``: bring an MLflow registry over (the ``[mlflow]`` extra)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import table


def add_commands(sub: Any) -> None:
    common = client_options()
    cmd = sub.add_parser("import", help="import models from another registry")
    sources = cmd.add_subparsers(metavar="SOURCE")
    mlflow = sources.add_parser(
        "mlflow",
        parents=[common],
        help="an MLflow tracking store and registry (sqlite:///..., a ./mlruns file store, ...)",
    )
    mlflow.add_argument("--tracking-uri", required=True, help="e.g. sqlite:///mlflow.db")
    mlflow.add_argument("--registry-uri", default="", help="default: the tracking URI")
    mlflow.add_argument(
        "--model", action="append", default=[], help="only these MLflow models (repeatable)"
    )
    mlflow.add_argument("--actor", help="recorded in the audit (default: login name)")
    mlflow.add_argument("--json", action="store_true")
    mlflow.set_defaults(handler=_cmd_import_mlflow)


def _cmd_import_mlflow(args: argparse.Namespace) -> int:
    try:
        from modelplane.importers.mlflow_registry import MlflowImporter
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ValueError(
            f"the MLflow importer needs the mlflow extra: pip install 'modelplane[mlflow]' "
            f"({error})"
        ) from None
    actor = args.actor or os.environ.get("MODELPLANE_ACTOR") or getpass.getuser()
    with client_from(args) as client:
        importer = MlflowImporter(
            client,
            args.tracking_uri,
            args.registry_uri,
            actor=actor,
            log=(lambda _: None) if args.json else print,
        )
        report = importer.run(args.model)
    if args.json:
        print(json.dumps(report.__dict__, indent=2, sort_keys=True))
    else:
        print(
            table(
                ("MLFLOW", "VERSION", "MODELPLANE", "STATUS"),
                [(m, v, f"{t}:{n}", s) for m, v, t, n, s in report.versions],
            )
        )
        for model, alias, number in report.aliases:
            print(f"alias {model}@{alias} -> v{number}")
        for line in report.skipped + report.problems:
            print(f"note: {line}")
        if report.dropped_points:
            print(f"note: {report.dropped_points} non-finite metric points were not imported")
    return 1 if report.problems else 0
