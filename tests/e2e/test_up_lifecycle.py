"""`modelplane up` in a real subprocess: it serves, and SIGTERM leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest

from modelplane.client import ModelplaneClient
from modelplane.sample_models import linear_model

pytestmark = pytest.mark.e2e

_ADDRESS = re.compile(r"^(control plane|inference)\s+(\S+)")


def _read_until_ready(process: subprocess.Popen[str], timeout_s: float) -> dict[str, str]:
    addresses: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                raise AssertionError(f"`modelplane up` exited with {process.returncode}")
            continue
        if match := _ADDRESS.match(line):
            addresses[match.group(1)] = match.group(2)
        if line.startswith("ready in"):
            return addresses
    raise AssertionError("`modelplane up` did not become ready in time")


def test_up_serves_and_sigterm_stops_everything_it_started(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "modelplane.cli", "up", "--data-dir", str(tmp_path),
         "--control-port", "0", "--inference-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    children: list[psutil.Process] = []
    try:
        addresses = _read_until_ready(process, timeout_s=120)
        # Auth is on by default: the admin token `up` wrote for the local CLI.
        token = (tmp_path / "auth" / "admin.token").read_text().strip()
        with ModelplaneClient(addresses["control plane"], addresses["inference"]) as anonymous:
            with pytest.raises(grpc.RpcError) as refused:
                anonymous.list_models()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with ModelplaneClient(
            addresses["control plane"], addresses["inference"], token=token
        ) as client:
            version = client.register("lifecycle", linear_model())
            client.set_route("lifecycle", [("lifecycle", version.version, 1)])
            response = client.predict("lifecycle", {"x": np.ones((1, 16), np.float32)})
            assert response.version == version.version

        children = psutil.Process(process.pid).children(recursive=True)
        names = {child.name() for child in children}
        assert any("redis-server" in name for name in names), names
        assert any("raylet" in name for name in names), names
        # Ray starts workers at nice 15; `up` has its replicas serve at normal priority.
        replicas = [c for c in children if "ServeReplica" in " ".join(c.cmdline())]
        assert replicas, names
        assert {replica.nice() for replica in replicas} == {0}

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 0
        _, alive = psutil.wait_procs(children, timeout=30)
        leftovers = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert leftovers == [], f"orphans after SIGTERM: {[(p.pid, p.name()) for p in leftovers]}"
        assert not (tmp_path / "run.json").exists()
    finally:
        # On a failed assertion, still leave nothing behind: stop what `up` started, by PID.
        if process.poll() is None:
            process.kill()
            process.wait()
        for child in children:
            if child.is_running():
                child.kill()
