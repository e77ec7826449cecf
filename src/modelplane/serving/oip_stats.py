"""Per-version inference statistics of one replica, as the Open Inference Protocol reports them.

Counters only grow; they live in the replica's memory and restart with it
(the fleet-wide view is the OTel metrics the control plane aggregates). Every
update happens on the replica's event loop thread, so plain integer additions
need no lock; readers on that loop see a consistent record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass(slots=True)
class VersionStats:
    """One version's record. ``version`` 0 collects failures no version could be named for."""

    model: str
    version: int
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    # Rows inferred (the first dimension summed), and model executions.
    inference_count: int = 0
    execution_count: int = 0
    # Milliseconds since the epoch; 0 until the first inference.
    last_inference_ms: int = 0


class InferenceStatistics:
    def __init__(self) -> None:
        self._by_version: dict[tuple[str, int], VersionStats] = {}

    def _entry(self, model: str, version: int) -> VersionStats:
        key = (model, version)
        entry = self._by_version.get(key)
        if entry is None:
            entry = self._by_version[key] = VersionStats(model, version)
        return entry

    def succeeded(
        self,
        model: str,
        version: int,
        rows: int,
        queue_ns: int,
        input_ns: int,
        infer_ns: int,
        output_ns: int,
    ) -> None:
        """One answered request and its phases (plain integers: this runs per request)."""
        entry = self._entry(model, version)
        entry.success.add(queue_ns + input_ns + infer_ns + output_ns)
        entry.queue.add(queue_ns)
        entry.compute_input.add(input_ns)
        entry.compute_infer.add(infer_ns)
        entry.compute_output.add(output_ns)
        entry.inference_count += rows
        entry.execution_count += 1
        entry.last_inference_ms = time.time_ns() // 1_000_000

    def failed(self, model: str, version: int, elapsed_ns: int) -> None:
        self._entry(model, version).fail.add(elapsed_ns)

    def versions(self) -> list[VersionStats]:
        """Every record, ordered by model then version."""
        return [self._by_version[key] for key in sorted(self._by_version)]

    def get(self, model: str, version: int) -> VersionStats | None:
        return self._by_version.get((model, version))

    @staticmethod
    def empty(model: str, version: int) -> VersionStats:
        """A record of zeros for a version never asked (not stored)."""
        return VersionStats(model, version)
