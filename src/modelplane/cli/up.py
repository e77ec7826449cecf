"""`modelplane up`: the whole platform in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from modelplane.cli.auth import export_telemetry_token, prepare_local_auth, read_local_token
from modelplane.cli.common import RUN_FILE, settings_from
from modelplane.cli.output import stats_table
from modelplane.client import ModelplaneClient


def add_commands(sub: Any) -> None:
    up = sub.add_parser("up", help="run everything locally in the foreground")
    up.add_argument("--data-dir", type=Path, help="embedded Redis data and artifacts")
    up.add_argument("--redis-url", help="use this Redis instead of the embedded one")
    up.add_argument("--ray-address", help="use this Ray cluster instead of a local one")
    up.add_argument("--host", help="interface to listen on")
    up.add_argument("--control-port", type=int)
    up.add_argument("--inference-port", type=int)
    up.add_argument("--replicas", type=int, help="serving replicas")
    up.add_argument(
        "--no-auth",
        action="store_true",
        help="let every caller do everything (default: tokens, admin token in the data dir)",
    )
    up.add_argument("--demo", action="store_true", help="run the demo once everything is up")
    up.add_argument("--exit-after-demo", action="store_true", help="stop after the demo")
    up.add_argument("-v", "--verbose", action="store_true")
    up.set_defaults(handler=_cmd_up)


def _cmd_up(args: argparse.Namespace) -> int:
    from modelplane.launcher import LocalStack

    settings = settings_from(args)
    if getattr(args, "no_auth", False):
        settings = settings.model_copy(update={"auth_enabled": False})
        settings.model_fields_set.add("auth_enabled")
    settings, auth_notes = prepare_local_auth(settings)
    export_telemetry_token(settings)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = _install_stop_handlers(on_signal)
    stack = LocalStack(settings)
    run_file = settings.data_dir / RUN_FILE
    try:
        print("starting modelplane…", flush=True)
        stack.start()
        # Ray's driver installs a native fatal-signal handler for SIGTERM that aborts the
        # process; ours must be the one in force so a SIGTERM shuts down cleanly.
        _install_stop_handlers(on_signal)
        _write_run_file(run_file, stack)
        print(f"redis            {stack.redis_url}" + ("  (embedded)" if stack.redis else ""))
        print(f"control plane    {stack.control_address}")
        print(f"inference        {stack.inference_address}")
        print(f"artifacts        {stack.settings.resolved_artifact_root}")
        for note in auth_notes:
            print(note)
        print(f"ready in {stack.started_in_s:.1f} s", flush=True)
        if args.demo:
            _run_demo(
                stack.control_address,
                stack.inference_address,
                read_local_token(settings.data_dir) if settings.auth_enabled else None,
            )
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


def _install_stop_handlers(handler: Any) -> dict[int, Any]:
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


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


def _run_demo(control: str, inference: str, token: str | None = None) -> None:
    from modelplane.demo import run_demo

    with ModelplaneClient(control, inference, token=token) as client:
        print("\n== demo ==")
        result = run_demo(client)
        print("\n" + stats_table(result.stats))
        print("")
