"""Runs validation in a child process with a memory cap and a deadline.

Children come from a multiprocessing *forkserver* that preloads the validation
module (onnx, onnxruntime, numpy): each validation is a cheap fork of a clean
process, never of the control plane itself (whose gRPC and Redis threads must
not be forked). A child that crashes, hangs past its deadline or runs out of
memory is killed; the control plane only reads the outcome.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from modelplane.domain.errors import ErrorCode, Internal, ModelplaneError

_WORKER = "modelplane.registry.validate_worker"
_context_lock = threading.Lock()
_context: Any = None


def _forkserver() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([_WORKER])
            _context = context
        return _context


class SandboxError(ModelplaneError):
    """Admission refused the artifact; ``code`` says which status it maps to."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 60.0
    # Address space a child may add on top of what it maps when it starts.
    memory_bytes: int = 2 * 1024**3


class Validation:
    """One child validating one artifact: ``admitted()`` then ``outcome()``."""

    def __init__(self, path: str, options: dict[str, Any], limits: Limits) -> None:
        from modelplane.registry import validate_worker

        context = _forkserver()
        self._limits = limits
        self._deadline = time.monotonic() + limits.timeout_s
        self._conn, child_conn = context.Pipe(duplex=False)
        self._process = context.Process(
            target=validate_worker.child_main,
            args=(child_conn, path, options, limits.memory_bytes),
            daemon=True,
            name="modelplane-validate",
        )
        self._process.start()
        child_conn.close()

    def _receive(self) -> tuple[Any, ...] | str:
        """The child's next message, or the reason it will never send one."""
        remaining = self._deadline - time.monotonic()
        try:
            if remaining > 0 and self._conn.poll(remaining):
                message: tuple[Any, ...] = self._conn.recv()
                return message
        except (EOFError, OSError):
            pass
        # No message: the child is gone or still busy. Either way it is done.
        if self._process.is_alive():
            self.kill()
            return f"validation did not finish within {self._limits.timeout_s:g} s"
        self._process.join(1)
        code = self._process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            return f"validation process crashed ({name})"
        return f"validation process exited with status {code} without a result"

    def admitted(self) -> dict[str, Any]:
        """Static checks passed: their findings. SandboxError when refused."""
        message = self._receive()
        if isinstance(message, str):
            self.kill()
            raise SandboxError(ErrorCode.INVALID_ARGUMENT, f"artifact: {message}")
        if message[0] == "admitted":
            return dict(message[1])
        self.kill()
        if message[0] == "error":
            raise SandboxError(ErrorCode[message[1]], str(message[2]))
        raise Internal(f"unexpected message from the validation process: {message[0]!r}")

    def outcome(self) -> tuple[dict[str, Any] | None, str]:
        """(findings, "") when valid, (None, reason) when not."""
        try:
            message = self._receive()
            if isinstance(message, str):
                return None, message
            if message[0] == "validated":
                return dict(message[1]), ""
            return None, str(message[1])
        finally:
            self.kill()

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._conn.close()


class Sandbox:
    """Starts validations, at most ``max_concurrent`` children at a time."""

    def __init__(self, limits: Limits | None = None, max_concurrent: int = 2) -> None:
        self.limits = limits or Limits()
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def start(self, path: str, options: dict[str, Any]) -> Validation:
        return Validation(path, options, self.limits)

    @property
    def slots(self) -> threading.BoundedSemaphore:
        return self._slots
