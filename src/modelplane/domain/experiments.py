"""Experiments, runs, environments and promotions as immutable dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from modelplane.domain.models import Route


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    created_at_ms: int


class RunStatus(enum.Enum):
    """RUNNING -> FINISHED | FAILED | KILLED; only a RUNNING run accepts logging."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


@dataclass(frozen=True)
class RunArtifact:
    path: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class Run:
    run_id: str
    experiment: str
    name: str
    status: RunStatus
    start_ms: int
    # 0 while RUNNING.
    end_ms: int = 0
    code_commit: str = ""
    dataset_uri: str = ""
    dataset_hash: str = ""
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # The last value logged for each metric key.
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: tuple[RunArtifact, ...] = ()

    def artifact(self, path: str) -> RunArtifact | None:
        return next((a for a in self.artifacts if a.path == path), None)


@dataclass(frozen=True)
class MetricSeries:
    """Points of one metric in the order they were logged."""

    key: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    timestamps_ms: tuple[int, ...]


@dataclass(frozen=True)
class Environment:
    name: str
    description: str = ""
    # Logical endpoint name -> the concrete endpoint serving it in this environment.
    endpoints: dict[str, str] = field(default_factory=dict)
    serving_group: str = ""
    updated_at_ms: int = 0


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Promotion:
    model: str
    version: int
    from_environment: str
    to_environment: str
    endpoint: str
    from_endpoint: str
    to_endpoint: str
    gates: tuple[GateResult, ...]
    actor: str
    reason: str
    promoted_at_ms: int
    route: Route | None = None
    dry_run: bool = False
