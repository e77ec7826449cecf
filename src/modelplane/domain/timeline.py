"""When each phase of one prediction happened: the raw material of its child spans.

The predictor stamps it as the request moves (routed, queued at its version,
run started, run ended; each shadow copy when it finishes). Stamps are wall
clock nanoseconds (``time.time_ns``), the clock spans use. Reading a few clock
values per request costs well under a microsecond, so it is always on; spans
are only built from it for the requests whose trace is exported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ShadowTiming:
    """One mirrored copy of the request: which version ran it, when, and how it went."""

    model: str
    version: int
    start_ns: int
    end_ns: int
    ok: bool


@dataclass(slots=True)
class PredictTimeline:
    start_ns: int = 0
    routed_ns: int = 0
    """The route picked a version (0 when the request failed before)."""
    queued_ns: int = 0
    """The request reached its version's runner."""
    run_start_ns: int = 0
    run_end_ns: int = 0
    batch_requests: int = 0
    """How many requests shared the run that answered this one."""
    batch_rows: int = 0
    shadows: list[ShadowTiming] = field(default_factory=list)
    _lock: threading.Lock | None = None
    _on_shadow: Callable[[ShadowTiming], None] | None = None

    @property
    def queue_ns(self) -> int:
        """Time spent waiting for the version's runner (0 when it ran at once)."""
        if not self.run_start_ns or not self.queued_ns:
            return 0
        return max(self.run_start_ns - self.queued_ns, 0)

    @property
    def infer_ns(self) -> int:
        if not self.run_end_ns or not self.run_start_ns:
            return 0
        return max(self.run_end_ns - self.run_start_ns, 0)

    def expect_shadows(self) -> None:
        """Called before any shadow copy starts: from then on shadows may finish on
        one thread while the trace is exported on another."""
        if self._lock is None:
            self._lock = threading.Lock()

    def shadow_done(self, timing: ShadowTiming) -> None:
        lock = self._lock
        if lock is None:  # no shadow was announced: nobody can be listening
            self.shadows.append(timing)
            return
        with lock:
            self.shadows.append(timing)
            listener = self._on_shadow
        if listener is not None:
            listener(timing)

    def follow_shadows(self, listener: Callable[[ShadowTiming], None]) -> list[ShadowTiming]:
        """The shadows finished so far; ``listener`` hears of each one finishing later."""
        lock = self._lock
        if lock is None:
            return list(self.shadows)
        with lock:
            self._on_shadow = listener
            return list(self.shadows)
