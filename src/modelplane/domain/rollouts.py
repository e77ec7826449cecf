"""SLO-gated rollouts: what the control plane stores and reports about each one."""

from __future__ import annotations

from dataclasses import dataclass, field

RUNNING = "running"
PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
ABORTED = "aborted"
STATES = (RUNNING, PROMOTED, ROLLED_BACK, ABORTED)

DEFAULT_MIN_REQUESTS = 20


@dataclass(frozen=True)
class RolloutGates:
    max_p99_ratio: float
    max_error_rate: float
    min_accuracy_delta: float | None = None
    min_requests: int = DEFAULT_MIN_REQUESTS


@dataclass(frozen=True)
class RolloutEvent:
    ts_ms: int
    # started, advanced, rolled_back, promoted, aborted.
    action: str
    canary_weight: int
    reason: str


@dataclass(frozen=True)
class Rollout:
    endpoint: str
    model: str
    canary_version: int
    stable_version: int
    steps: tuple[int, ...]
    step_index: int
    state: str
    gates: RolloutGates
    interval_s: float
    step_started_ms: int
    # The route revision this rollout last wrote: a different one means someone
    # else changed the route, and the rollout stops rather than overwrite it.
    route_revision: int
    reason: str = ""
    history: tuple[RolloutEvent, ...] = field(default_factory=tuple)

    @property
    def canary_weight(self) -> int:
        if self.state == PROMOTED:
            return 100
        if self.state in (ROLLED_BACK, ABORTED):
            return 0
        return self.steps[self.step_index]
