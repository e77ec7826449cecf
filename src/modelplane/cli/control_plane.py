"""`modelplane control-plane`: only the control plane, against an existing Redis.

What a Kubernetes Deployment runs; the data plane is deployed separately (the
Helm chart's RayService), so this process starts neither Redis nor Ray.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from modelplane.cli.auth import with_configured_auth
from modelplane.cli.common import settings_from


def add_commands(sub: Any) -> None:
    cmd = sub.add_parser(
        "control-plane",
        help="run only the control plane (needs --redis-url or MODELPLANE_REDIS_URL)",
    )
    cmd.add_argument("--redis-url")
    cmd.add_argument("--host", help="interface to listen on (0.0.0.0 in a pod)")
    cmd.add_argument("--control-port", type=int)
    cmd.add_argument("--data-dir", type=Path)
    cmd.add_argument("-v", "--verbose", action="store_true")
    cmd.set_defaults(handler=_cmd_control_plane)


def _cmd_control_plane(args: argparse.Namespace) -> int:
    from modelplane.control.server import ControlPlane

    settings = settings_from(args)
    if not settings.redis_url:
        raise ValueError("redis_url: the control plane needs --redis-url or MODELPLANE_REDIS_URL")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    settings = with_configured_auth(settings)
    if not settings.auth_enabled:
        print(
            "warning: authentication is off (no auth_tokens, auth_tokens_file or "
            "auth_jwks_file configured): every caller may change the registry",
            file=sys.stderr,
            flush=True,
        )
    control = ControlPlane(settings, settings.redis_url or "")
    control.start()
    print(f"control plane    {control.address}", flush=True)
    try:
        stop.wait()
    finally:
        control.stop()
    return 0
