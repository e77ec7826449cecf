"""Per-version latency and error figures, as the telemetry query returns them.

It lives in the domain (not in telemetry, which fills it) because the codec has to
convert it to the wire and the codec sits below telemetry in the layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VersionStatsRecord:
    endpoint: str
    model: str
    version: int
    # Since the control plane started.
    request_count: int
    error_count: int
    # Over the last ``window_seconds``.
    window_request_count: int
    window_error_count: int
    # Percentiles over the window, in milliseconds; 0.0 when the window is empty.
    p50_ms: float
    p90_ms: float
    p99_ms: float
    window_seconds: int
    # Hex trace ids of the slowest requests in the window, slowest first.
    exemplar_trace_ids: tuple[str, ...] = field(default_factory=tuple)
    p999_ms: float = 0.0


# Requests each side of a latency comparison needs before their p99s are
# compared (p90s until then): a p99 over fewer rests on the slowest one or two
# requests, so one scheduling hiccup among twenty made a healthy version look
# several times slower. A version slow on every request fails a p90 as fast.
P99_MIN_REQUESTS = 200


def tail_latency(
    mine: VersionStatsRecord, reference: VersionStatsRecord
) -> tuple[str, float, float]:
    """("p99" or "p90", mine, reference): the tail percentile both windows hold
    enough requests to estimate, in milliseconds."""
    if min(mine.window_request_count, reference.window_request_count) >= P99_MIN_REQUESTS:
        return "p99", mine.p99_ms, reference.p99_ms
    return "p90", mine.p90_ms, reference.p90_ms


def tail_note(name: str, mine: VersionStatsRecord, reference: VersionStatsRecord) -> str:
    """Why a comparison used p90s; empty for p99s."""
    if name == "p99":
        return ""
    fewest = min(mine.window_request_count, reference.window_request_count)
    return f" (p90: {fewest} requests in the window, a p99 needs {P99_MIN_REQUESTS})"


@dataclass(frozen=True)
class VersionQualityRecord:
    """Drift and accuracy figures of one version; None where nothing is known yet."""

    endpoint: str
    model: str
    version: int
    # Largest PSI / KS statistic over the version's features against its baseline.
    drift_psi: float | None = None
    drift_ks: float | None = None
    drift_feature: str = ""
    # Joined feedback over the window: accuracy for class labels, MAE for numbers.
    feedback_count: int = 0
    accuracy: float | None = None
    mae: float | None = None


@dataclass(frozen=True)
class LatencyPoint:
    """One step of a version's latency over time; percentiles in milliseconds."""

    start_s: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class LatencySeries:
    endpoint: str
    model: str
    version: int
    step_seconds: int
    points: tuple[LatencyPoint, ...]


@dataclass(frozen=True)
class Alert:
    """Something an SRE should look at: a latency regression, drift, an error burst."""

    kind: str
    endpoint: str
    model: str
    version: int
    message: str
    observed: float
    threshold: float
    exemplar_trace_ids: tuple[str, ...] = field(default_factory=tuple)
