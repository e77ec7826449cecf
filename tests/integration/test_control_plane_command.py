"""`modelplane control-plane` runs only the control plane against a given Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from modelplane.client import ModelplaneClient
from modelplane.registry.embedded_redis import free_port


def test_control_plane_command_serves_the_registry_and_stops_on_sigterm(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "MODELPLANE_KEY_PREFIX": key_prefix}
    process = subprocess.Popen(
        [sys.executable, "-m", "modelplane.cli", "control-plane", "--redis-url", redis_url,
         "--control-port", str(port), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().split() == ["control", "plane", f"127.0.0.1:{port}"]
        with ModelplaneClient(f"127.0.0.1:{port}") as client:
            created = client.create_model("from-command", "made through the command")
            assert created.name == "from-command"
            assert [m.name for m in client.list_models()] == ["from-command"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_control_plane_command_without_redis_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODELPLANE_REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "modelplane.cli", "control-plane", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 1
    assert "redis_url" in result.stderr and "Traceback" not in result.stderr
