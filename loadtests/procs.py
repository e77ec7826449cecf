"""Start a server as a child process, wait for it to announce its port, stop it by PID.

The child writes to a log file rather than a pipe: a chatty child (Ray logs a lot)
can never block on a full pipe nobody reads, and the log is there to show on failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
_PORT_LINE = re.compile(rb"^PORT (\d+)$", re.MULTILINE)


class ServerProcess:
    """A ``python -m <module>`` child that prints ``PORT <n>`` (or a line matching
    ``ready``) once it is ready."""

    def __init__(
        self,
        module: str,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 30.0,
        ready: re.Pattern[bytes] = _PORT_LINE,
    ) -> None:
        self.ready = ready
        """A line whose last group is the port (``PORT <n>`` unless told otherwise)."""
        self.module = module
        self.args = args
        self.extra_env = env or {}
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.module} is not running")
        return self._proc.pid

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.module} has not announced its port")
        return f"127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        env = dict(os.environ)
        # The children import loadtests.* and must find it whatever the caller's cwd.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.update(self.extra_env)
        fd, name = tempfile.mkstemp(prefix=f"{self.module.rsplit('.', 1)[-1]}-", suffix=".log")
        self._log_path = Path(name)
        with os.fdopen(fd, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env=env,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            match = self.ready.search(self._log_path.read_bytes())
            if match:
                self.port = int(match.group(match.lastindex or 0))
                return self
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        code = self._proc.poll()
        tail = self.log_tail()
        self.stop()
        reason = f"exited with {code}" if code is not None else "timed out"
        raise RuntimeError(f"{self.module} {reason} before announcing its port:\n{tail}")

    def log_tail(self, lines: int = 40) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
        return proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
