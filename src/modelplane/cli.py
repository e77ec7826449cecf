"""The ``modelplane`` command.

``up`` runs the whole platform in the foreground; every other command is a thin
client of the running control and data planes. Addresses come from flags, then
``MODELPLANE_*`` variables, then the file ``up`` writes into the data dir.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import numpy as np

from modelplane.cli_output import (
    models_table,
    routes_table,
    stats_table,
    target_text,
    versions_table,
)
from modelplane.client import ModelplaneClient, TargetSpec, outputs_of
from modelplane.config import Settings

RUN_FILE = "run.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
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
        # The server already phrased the problem; a client never sees a stack trace.
        print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


# --- settings and addresses ---------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for field in ("redis_url", "ray_address", "data_dir", "control_port", "inference_port",
                  "replicas", "host"):
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    return Settings(**overrides)


def _client(args: argparse.Namespace) -> ModelplaneClient:
    settings = _settings(args)
    control = args.control or os.environ.get("MODELPLANE_CONTROL_ADDRESS")
    inference = args.inference or os.environ.get("MODELPLANE_INFERENCE_ADDRESS")
    run_file = settings.data_dir / RUN_FILE
    if (not control or not inference) and run_file.exists():
        running = json.loads(run_file.read_text())
        control = control or running["control_address"]
        inference = inference or running["inference_address"]
    return ModelplaneClient(
        control or settings.control_address, inference or settings.inference_address
    )


# --- up -------------------------------------------------------------------------


def _cmd_up(args: argparse.Namespace) -> int:
    from modelplane.launcher import LocalStack

    settings = _settings(args)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = LocalStack(settings)
    run_file = settings.data_dir / RUN_FILE
    try:
        print("starting modelplane…", flush=True)
        stack.start()
        _write_run_file(run_file, stack)
        print(f"redis            {stack.redis_url}" + ("  (embedded)" if stack.redis else ""))
        print(f"control plane    {stack.control_address}")
        print(f"inference        {stack.inference_address}")
        print(f"artifacts        {stack.settings.resolved_artifact_root}")
        print(f"ready in {stack.started_in_s:.1f} s", flush=True)
        if args.demo:
            _run_demo(stack.control_address, stack.inference_address)
        if args.exit_after_demo:
            return 0
        print("serving; Ctrl-C to stop", flush=True)
        stop.wait()
        return 0
    finally:
        print("stopping…", flush=True)
        stack.stop()
        run_file.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stopped", flush=True)


def _write_run_file(path: Path, stack: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "control_address": stack.control_address,
                "inference_address": stack.inference_address,
                "redis_url": stack.redis_url,
            }
        )
    )


def _run_demo(control: str, inference: str) -> None:
    from modelplane.demo import run_demo

    with ModelplaneClient(control, inference) as client:
        print("\n== demo ==")
        result = run_demo(client)
        print("\n" + stats_table(result.stats))
        print("")


# --- client commands --------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    with _client(args) as client:
        from modelplane.demo import run_demo

        result = run_demo(client)
        print("\n" + stats_table(result.stats))
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    with _client(args) as client:
        version = client.register(
            args.model, Path(args.file), description=args.description,
            create_model=not args.no_create,
        )
        print(versions_table([version]))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(models_table(client.list_models()))
    return 0


def _cmd_versions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(versions_table(client.list_versions(args.model)))
    return 0


def _cmd_alias(args: argparse.Namespace) -> int:
    with _client(args) as client:
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


def parse_target(text: str) -> TargetSpec:
    """``model:VERSION[=WEIGHT]`` or ``model@ALIAS[=WEIGHT]``; weight defaults to 100."""
    spec, _, weight_text = text.partition("=")
    weight = int(weight_text) if weight_text else 100
    if "@" in spec:
        model, _, alias = spec.partition("@")
        return (model, alias, weight)
    model, sep, version = spec.rpartition(":")
    if not sep or not version.isdigit():
        raise ValueError(f"target {text!r}: expected MODEL:VERSION[=WEIGHT] or MODEL@ALIAS[=WEIGHT]")
    return (model, int(version), weight)


def _cmd_route(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if not args.targets:
            route = client.get_route(args.endpoint)
            if route is None:
                raise ValueError(f"endpoint {args.endpoint!r} has no route")
        else:
            route = client.set_route(
                args.endpoint, [parse_target(t) for t in args.targets], args.expected_revision
            )
        targets = " ".join(target_text(t) for t in route.targets)
        print(f"{route.endpoint} (revision {route.revision}) -> {targets}")
    return 0


def _cmd_routes(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(routes_table(client.list_routes()))
    return 0


def parse_input(text: str) -> tuple[str, np.ndarray]:
    """``NAME=JSON`` (float32), ``NAME:DTYPE=JSON`` or ``NAME=@FILE.npy``."""
    name_part, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"input {text!r}: expected NAME=JSON, NAME:DTYPE=JSON or NAME=@FILE.npy")
    name, _, dtype = name_part.partition(":")
    if value.startswith("@"):
        array = np.load(value[1:], allow_pickle=False)
    else:
        try:
            array = np.asarray(json.loads(value), dtype=dtype or "float32")
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"input {name!r}: {err}") from None
    return name, array


def _cmd_predict(args: argparse.Namespace) -> int:
    inputs = dict(parse_input(text) for text in args.input)
    with _client(args) as client:
        response = client.predict(
            args.endpoint, inputs, model=args.model, version=args.version, alias=args.alias
        )
    answer = {
        "endpoint": response.endpoint,
        "model": response.model,
        "version": response.version,
        "prediction_id": response.prediction_id,
        "outputs": {name: array.tolist() for name, array in outputs_of(response).items()},
    }
    print(json.dumps(answer, indent=2))
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(stats_table(client.stats(args.endpoint or "", args.window)))
    return 0


# --- parser -----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelplane", description="Model registry, routing and gRPC serving."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--control", help="control-plane address host:port")
    common.add_argument("--inference", help="data-plane address host:port")
    common.add_argument("--data-dir", type=Path, help="where `up` keeps its state (run.json)")
    common.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(metavar="COMMAND")

    up = sub.add_parser("up", help="run everything locally in the foreground")
    up.add_argument("--data-dir", type=Path, help="embedded Redis data and artifacts")
    up.add_argument("--redis-url", help="use this Redis instead of the embedded one")
    up.add_argument("--ray-address", help="use this Ray cluster instead of a local one")
    up.add_argument("--host", help="interface to listen on")
    up.add_argument("--control-port", type=int)
    up.add_argument("--inference-port", type=int)
    up.add_argument("--replicas", type=int, help="serving replicas")
    up.add_argument("--demo", action="store_true", help="run the demo once everything is up")
    up.add_argument("--exit-after-demo", action="store_true", help="stop after the demo")
    up.add_argument("-v", "--verbose", action="store_true")
    up.set_defaults(handler=_cmd_up)

    cmd = sub.add_parser("demo", parents=[common], help="run the demo against a running platform")
    cmd.set_defaults(handler=_cmd_demo)

    cmd = sub.add_parser("register", parents=[common], help="register an ONNX file as a new version")
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

    cmd = sub.add_parser(
        "route", parents=[common],
        help="show an endpoint's route, or set it: route ENDPOINT MODEL:VERSION[=WEIGHT]…",
    )
    cmd.add_argument("endpoint")
    cmd.add_argument("targets", nargs="*", help="MODEL:VERSION[=WEIGHT] or MODEL@ALIAS[=WEIGHT]")
    cmd.add_argument(
        "--expected-revision", type=int,
        help="compare-and-set against this revision (default: the current one)",
    )
    cmd.set_defaults(handler=_cmd_route)

    cmd = sub.add_parser("routes", parents=[common], help="list endpoints and their routes")
    cmd.set_defaults(handler=_cmd_routes)

    cmd = sub.add_parser("predict", parents=[common], help="call Predict")
    cmd.add_argument("endpoint", nargs="?", help="endpoint name (or use --model)")
    cmd.add_argument("--model")
    cmd.add_argument("--version", type=int)
    cmd.add_argument("--alias")
    cmd.add_argument(
        "-i", "--input", action="append", default=[],
        help="NAME=JSON, NAME:DTYPE=JSON or NAME=@FILE.npy (repeatable)",
    )
    cmd.set_defaults(handler=_cmd_predict)

    cmd = sub.add_parser("stats", parents=[common], help="per-version request counts and latency")
    cmd.add_argument("endpoint", nargs="?")
    cmd.add_argument("--window", type=int, default=60, help="seconds the percentiles cover")
    cmd.set_defaults(handler=_cmd_stats)
    return parser


if __name__ == "__main__":
    sys.exit(main())
