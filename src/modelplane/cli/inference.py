"""Data-plane commands: predict, demo."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import stats_table
from modelplane.client import outputs_of


def add_commands(sub: Any) -> None:
    common = client_options()
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

    cmd = sub.add_parser("demo", parents=[common], help="run the demo against a running platform")
    cmd.set_defaults(handler=_cmd_demo)


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
    with client_from(args) as client:
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from modelplane.demo import run_demo

    with client_from(args) as client:
        result = run_demo(client)
        print("\n" + stats_table(result.stats))
    return 0
