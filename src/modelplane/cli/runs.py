"""Experiment commands: experiments, runs (search), run, compare (with a PNG of curves),
and ``register --from-run``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import print_json, table, versions_table
from modelplane.cli.run_plots import plot_curves
from modelplane.v1 import experiments_pb2, registry_pb2

_STATUS_PREFIX = "RUN_STATUS_"


def add_commands(sub: Any) -> None:
    common = client_options()
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON for scripts")

    cmd = sub.add_parser("experiments", parents=[common, json_flag], help="list experiments")
    cmd.set_defaults(handler=_cmd_experiments)

    cmd = sub.add_parser(
        "runs", parents=[common, json_flag], help="search runs by params, metrics and tags"
    )
    cmd.add_argument(
        "-e", "--experiment", action="append", default=[], help="only these (repeatable)"
    )
    cmd.add_argument("--where", default="", help="e.g. 'metrics.auc>0.9 and params.lr<0.01'")
    cmd.add_argument(
        "--order-by", default="", help="e.g. 'metrics.auc desc' (default: newest first)"
    )
    cmd.add_argument("--limit", type=int, default=0, help="at most this many (default 1000)")
    cmd.set_defaults(handler=_cmd_runs)

    cmd = sub.add_parser("run", parents=[common, json_flag], help="one run in full")
    cmd.add_argument("run_id")
    cmd.set_defaults(handler=_cmd_run)

    cmd = sub.add_parser(
        "compare", parents=[common, json_flag], help="runs side by side; --plot for curves"
    )
    cmd.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    cmd.add_argument("--plot", type=Path, help="write a PNG of the metric curves here")
    cmd.add_argument(
        "--metric", action="append", default=[], help="curves to plot (default: all)"
    )
    cmd.set_defaults(handler=_cmd_compare)


def status_text(status: int) -> str:
    return experiments_pb2.RunStatus.Name(status).removeprefix(_STATUS_PREFIX)  # type: ignore[arg-type]


def _number(value: float) -> str:
    return f"{value:.6g}"


def runs_table(runs: Sequence[experiments_pb2.Run]) -> str:
    """One row per run; a column per param and metric any of them has."""
    params = sorted({key for run in runs for key in run.params})
    metrics = sorted({key for run in runs for key in run.metrics})
    headers = ["RUN", "EXPERIMENT", "NAME", "STATUS"]
    headers += [f"params.{p}" for p in params] + [f"metrics.{m}" for m in metrics]
    rows = []
    for run in runs:
        row = [run.run_id[:12], run.experiment, run.name, status_text(run.status)]
        row += [run.params.get(p, "-") for p in params]
        row += [_number(run.metrics[m]) if m in run.metrics else "-" for m in metrics]
        rows.append(row)
    return table(headers, rows)


def compare_table(runs: Sequence[experiments_pb2.Run]) -> str:
    """Transposed: a row per field, a column per run; differing params are marked ``*``."""
    headers = ["FIELD", *(run.run_id[:12] for run in runs)]
    rows: list[list[str]] = [
        ["experiment", *(r.experiment for r in runs)],
        ["name", *(r.name for r in runs)],
        ["status", *(status_text(r.status) for r in runs)],
        ["code_commit", *((r.code_commit[:12] or "-") for r in runs)],
    ]
    for key in sorted({k for r in runs for k in r.params}):
        values = [r.params.get(key, "-") for r in runs]
        mark = " *" if len(set(values)) > 1 else ""
        rows.append([f"params.{key}{mark}", *values])
    for key in sorted({k for r in runs for k in r.metrics}):
        rows.append(
            [f"metrics.{key}", *(_number(r.metrics[key]) if key in r.metrics else "-"
                                 for r in runs)]
        )
    return table(headers, rows)


def _cmd_experiments(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        found = client.experiments.ListExperiments(
            experiments_pb2.ListExperimentsRequest()
        ).experiments
    if args.json:
        print_json(found)
    else:
        print(table(("EXPERIMENT", "DESCRIPTION"), [(e.name, e.description) for e in found]))
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    request = experiments_pb2.SearchRunsRequest(
        experiments=args.experiment, where=args.where, order_by=args.order_by, limit=args.limit
    )
    with client_from(args) as client:
        runs = list(client.experiments.SearchRuns(request).runs)
    print_json(runs) if args.json else print(runs_table(runs))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        run = client.experiments.GetRun(experiments_pb2.GetRunRequest(run_id=args.run_id))
    if args.json:
        print_json(run)
        return 0
    print(compare_table([run]))
    for artifact in run.artifacts:
        print(f"artifact {artifact.path}  sha256:{artifact.sha256[:12]}  {artifact.size_bytes} B")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        stub = client.experiments
        runs = [stub.GetRun(experiments_pb2.GetRunRequest(run_id=r)) for r in args.run_ids]
        curves: dict[str, list[tuple[str, Sequence[int], Sequence[float]]]] = {}
        if args.plot:
            wanted = args.metric or sorted({k for r in runs for k in r.metrics})
            for run in runs:
                for key in wanted:
                    if key not in run.metrics:
                        continue
                    series = stub.GetMetricHistory(
                        experiments_pb2.GetMetricHistoryRequest(run_id=run.run_id, key=key)
                    )
                    label = f"{run.name} ({run.run_id[:8]})"
                    curves.setdefault(key, []).append(
                        (label, list(series.steps), list(series.values))
                    )
    print_json(runs) if args.json else print(compare_table(runs))
    if args.plot:
        plot_curves(curves, args.plot, title=", ".join(sorted({r.experiment for r in runs})))
        if not args.json:
            print(f"wrote {args.plot}")
    return 0


def register_from_run(args: argparse.Namespace, actor: str) -> int:
    """``register MODEL --from-run RUN_ID``: the run's ONNX artifact, lineage from the run."""
    request = experiments_pb2.RegisterFromRunRequest(
        run_id=args.from_run,
        model=args.model,
        artifact_path=args.artifact_path,
        description=args.description,
        create_model=not args.no_create,
    )
    metadata: list[tuple[str, str | bytes]] = [("x-modelplane-actor", actor)]
    if args.reason:
        metadata.append(("x-modelplane-reason", args.reason))
    with client_from(args) as client:
        version = client.experiments.RegisterFromRun(request, metadata=tuple(metadata))
    if args.json:
        print_json(version)
    else:
        print(versions_table([version], lineage=True))
        if version.status_reason:
            print(f"reason: {version.status_reason}")
    return 0 if version.status == registry_pb2.VERSION_STATUS_READY else 1
