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
