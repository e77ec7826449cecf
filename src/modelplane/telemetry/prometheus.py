"""Prometheus ``/metrics`` for the control plane and the replicas.

Both render at scrape time from what they already keep (custom collectors), so
a scrape costs the predict path nothing and series never go stale in a registry.
Labels are ``endpoint``, ``model`` and ``version``; at most ``max_series`` label
sets are exported per metric family, the busiest first, and the rest are folded
into one ``endpoint="other"`` series so a flood of endpoint names cannot blow
up a Prometheus server's cardinality.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.drift import DriftTracker
from modelplane.telemetry.histogram import BOUNDS_S, LatencyHistogram

OTHER = "other"
LABELS = ("endpoint", "model", "version")
# Coarse buckets for the replicas' exposition (seconds): enough for SLO queries,
# few enough to keep a scrape small. Re-binned from the fine internal buckets.
PROMETHEUS_BUCKETS_S = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

Key = tuple[str, str, int]


def bounded(keys_by_weight: dict[Key, int], max_series: int) -> tuple[list[Key], list[Key]]:
    """(kept, folded): the ``max_series`` heaviest keys, and the rest."""
    ordered = sorted(keys_by_weight, key=lambda k: (-keys_by_weight[k], k))
    return ordered[:max_series], ordered[max_series:]


def _labels(key: Key) -> list[str]:
    return [key[0], key[1], str(key[2])]


class ControlPlaneCollector(Collector):
    """Request and error totals, window percentiles, drift, per endpoint x version."""

    def __init__(
        self,
        aggregator: StatsAggregator,
        max_series: int,
        drift: DriftTracker | None = None,
        window_s: int = 60,
    ) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series}")
        self._aggregator = aggregator
        self._drift = drift
        self._max_series = max_series
        self._window_s = window_s

    def collect(self) -> Iterable[Metric]:
        totals = self._aggregator.totals()
        kept, folded = bounded({k: v[0] for k, v in totals.items()}, self._max_series)
        requests = CounterMetricFamily(
            "modelplane_requests", "Predict requests seen by the control plane", labels=LABELS
        )
        errors = CounterMetricFamily(
            "modelplane_request_errors", "Predict requests that failed", labels=LABELS
        )
        for key in kept:
            requests.add_metric(_labels(key), totals[key][0])
            errors.add_metric(_labels(key), totals[key][1])
        if folded:
            requests.add_metric([OTHER, OTHER, "0"], sum(totals[k][0] for k in folded))
            errors.add_metric([OTHER, OTHER, "0"], sum(totals[k][1] for k in folded))
        yield requests
        yield errors

        latency = GaugeMetricFamily(
            "modelplane_latency_seconds",
            f"Predict latency quantiles over the last {self._window_s} s",
            labels=(*LABELS, "quantile"),
        )
        keep = set(kept)
        for record in self._aggregator.query(None, self._window_s):
            key = (record.endpoint, record.model, record.version)
            if key not in keep:
                continue
            for quantile, value_ms in (
                ("0.5", record.p50_ms), ("0.9", record.p90_ms), ("0.99", record.p99_ms),
                ("0.999", record.p999_ms),
            ):
                latency.add_metric([*_labels(key), quantile], value_ms / 1000.0)
        yield latency

        if self._drift is not None:
            drift = GaugeMetricFamily(
                "modelplane_drift_psi", "Worst feature PSI against the version's baseline",
                labels=LABELS,
            )
            for key, score in sorted(self._drift.scores().items()):
                if key in keep:
                    drift.add_metric(_labels(key), score.psi)
            yield drift


@dataclass
class _Counts:
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    errors: int = 0


class ReplicaMetrics(Collector):
    """What one replica served, per endpoint x version; ``observe`` is ~1 µs."""

    def __init__(self, max_series: int) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series}")
        self._max_series = max_series
        self._lock = threading.Lock()
        self._series: dict[Key, _Counts] = {}
        self._other = _Counts()

    def observe(self, endpoint: str, model: str, version: int, seconds: float, ok: bool) -> None:
        key = (endpoint, model, version)
        with self._lock:
            counts = self._series.get(key)
            if counts is None:
                # Past the bound, new label sets go to "other" for good: the
                # exported series never change identity between scrapes.
                if len(self._series) >= self._max_series:
                    counts = self._other
                else:
                    counts = self._series[key] = _Counts()
            counts.histogram.observe(seconds)
            if not ok:
                counts.errors += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = [(k, list(c.histogram.counts), c.histogram.sum, c.errors)
                        for k, c in sorted(self._series.items())]
            if self._other.histogram.count:
                o = self._other
                snapshot.append(((OTHER, OTHER, 0), list(o.histogram.counts), o.histogram.sum,
                                 o.errors))
        latency = HistogramMetricFamily(
            "modelplane_replica_predict_duration_seconds",
            "Predict latency as this replica saw it",
            labels=LABELS,
        )
        errors = CounterMetricFamily(
            "modelplane_replica_predict_errors", "Predict requests that failed on this replica",
            labels=LABELS,
        )
        for key, counts, total, failed in snapshot:
            latency.add_metric(_labels(key), _coarse_buckets(counts), total)
            errors.add_metric(_labels(key), failed)
        yield latency
        yield errors


def _coarse_buckets(counts: list[int]) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs on ``PROMETHEUS_BUCKETS_S`` from the fine buckets.

    A fine bucket is counted under the first coarse bound at or above its upper
    bound, so a coarse bucket never claims values above its ``le``.
    """
    coarse = [0] * (len(PROMETHEUS_BUCKETS_S) + 1)
    j = 0
    for i, n in enumerate(counts):
        upper = BOUNDS_S[i] if i < len(BOUNDS_S) else float("inf")
        while j < len(PROMETHEUS_BUCKETS_S) and PROMETHEUS_BUCKETS_S[j] < upper:
            j += 1
        coarse[j] += n
    pairs = []
    running = 0
    for bound, n in zip((*PROMETHEUS_BUCKETS_S, float("inf")), coarse, strict=True):
        running += n
        pairs.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
    return pairs


class MetricsServer:
    """``/metrics`` over HTTP on its own daemon thread, for one set of collectors."""

    def __init__(self, collectors: Iterable[Collector], host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            self.registry.register(collector)
        self._server: WSGIServer
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port: int = self._server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
