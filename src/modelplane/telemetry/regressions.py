"""Latency and error regressions, found in the aggregator's windows.

Two comparisons, per endpoint x version:

- **against its own baseline**: the recent window's p99 against the same
  version's p99 over the rest of the hour before it (a version that got slower);
- **canary vs stable in the same window**: each version against the version that
  served the most requests of its endpoint in that window (a new version slower
  than the one it is meant to replace, under the same load at the same time).

Both need enough requests on each side to mean anything (``min_requests``), and
compare p90s until both sides have ``P99_MIN_REQUESTS`` (a p99 over fewer is the
slowest request or two).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from modelplane.domain.stats import Alert, VersionStatsRecord, tail_latency, tail_note
from modelplane.telemetry.aggregator import HORIZON_SECONDS, StatsAggregator

BASELINE_REGRESSION = "latency_regression_vs_baseline"
CANARY_REGRESSION = "latency_regression_vs_stable"
ERROR_RATE = "error_rate"


@dataclass(frozen=True)
class RegressionPolicy:
    recent_s: int = 300
    max_p99_ratio: float = 1.5
    max_error_rate: float = 0.05
    min_requests: int = 20

    def __post_init__(self) -> None:
        if not 10 <= self.recent_s < HORIZON_SECONDS:
            raise ValueError(
                f"recent_s must be between 10 and {HORIZON_SECONDS - 1}, got {self.recent_s}"
            )
        if self.max_p99_ratio <= 1.0:
            raise ValueError(f"max_p99_ratio must be > 1, got {self.max_p99_ratio}")
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError(f"max_error_rate must be within [0, 1], got {self.max_error_rate}")


def error_rate(record: VersionStatsRecord) -> float:
    if record.window_request_count == 0:
        return 0.0
    return record.window_error_count / record.window_request_count


def stable_of(records: list[VersionStatsRecord]) -> VersionStatsRecord | None:
    """The version that served most of an endpoint's requests in a window."""
    if not records:
        return None
    return max(records, key=lambda r: (r.window_request_count, -r.version))


def latency_alerts(
    aggregator: StatsAggregator,
    endpoint: str | None,
    policy: RegressionPolicy,
    clock: Callable[[], float] = time.time,
) -> list[Alert]:
    now = clock()
    recent_start = now - policy.recent_s
    recent = aggregator.window_between(endpoint, recent_start, now)
    baseline = {
        (r.endpoint, r.model, r.version): r
        for r in aggregator.window_between(endpoint, now - HORIZON_SECONDS, recent_start - 1)
    }
    alerts: list[Alert] = []
    by_endpoint: dict[str, list[VersionStatsRecord]] = {}
    for record in recent:
        if record.window_request_count < policy.min_requests:
            continue
        if record.endpoint:
            by_endpoint.setdefault(record.endpoint, []).append(record)
        rate = error_rate(record)
        if rate > policy.max_error_rate:
            alerts.append(_alert(ERROR_RATE, record, rate, policy.max_error_rate,
                                 f"error rate {rate:.1%} over the last {policy.recent_s} s "
                                 f"(limit {policy.max_error_rate:.1%})"))
        before = baseline.get((record.endpoint, record.model, record.version))
        if before is not None and before.window_request_count >= policy.min_requests:
            name, mine, theirs = tail_latency(record, before)
            ratio = _ratio(mine, theirs)
            if ratio > policy.max_p99_ratio:
                alerts.append(_alert(
                    BASELINE_REGRESSION, record, ratio, policy.max_p99_ratio,
                    f"{name} {mine:.2f} ms over the last {policy.recent_s} s is "
                    f"{ratio:.2f}x its own baseline {theirs:.2f} ms"
                    + tail_note(name, record, before),
                ))
    for records in by_endpoint.values():
        stable = stable_of(records)
        assert stable is not None
        for record in records:
            if record is stable:
                continue
            name, mine, theirs = tail_latency(record, stable)
            ratio = _ratio(mine, theirs)
            if ratio > policy.max_p99_ratio:
                alerts.append(_alert(
                    CANARY_REGRESSION, record, ratio, policy.max_p99_ratio,
                    f"{name} {mine:.2f} ms is {ratio:.2f}x that of "
                    f"{stable.model}:{stable.version} ({theirs:.2f} ms) "
                    f"in the same {policy.recent_s} s" + tail_note(name, record, stable),
                ))
    return alerts


def _ratio(value: float, reference: float) -> float:
    # A reference of 0 ms (empty, or below the first bucket) cannot be exceeded by a ratio.
    return value / reference if reference > 0 else 1.0


def _alert(
    kind: str, record: VersionStatsRecord, observed: float, threshold: float, message: str
) -> Alert:
    return Alert(
        kind=kind,
        endpoint=record.endpoint,
        model=record.model,
        version=record.version,
        message=message,
        observed=observed,
        threshold=threshold,
        exemplar_trace_ids=record.exemplar_trace_ids,
    )
