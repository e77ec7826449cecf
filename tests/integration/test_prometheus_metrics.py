"""Prometheus /metrics over real HTTP: labels, quantiles, and the cardinality bound."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.histogram import BOUNDS_S, bucket_index
from modelplane.telemetry.prometheus import (
    ControlPlaneCollector,
    MetricsServer,
    ReplicaMetrics,
)

pytestmark = pytest.mark.integration


def _scrape(server: MetricsServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def _add(agg: StatsAggregator, endpoint: str, n: int, status: str = "OK") -> None:
    counts = [0] * (len(BOUNDS_S) + 1)
    counts[bucket_index(0.002)] = n
    agg.add_histogram_point(endpoint, "m", 1, status, counts, BOUNDS_S, 0.002 * n, n,
                            time.time())


def test_control_plane_metrics_are_labelled_and_bounded() -> None:
    agg = StatsAggregator()
    _add(agg, "busy", 100)
    _add(agg, "busy", 5, status="INTERNAL")
    _add(agg, "quiet", 10)
    _add(agg, "rare", 1)
    server = MetricsServer([ControlPlaneCollector(agg, max_series=2)], "127.0.0.1", 0)
    try:
        samples = _scrape(server)
    finally:
        server.stop()
    requests = {s[0]["endpoint"]: s[1] for s in samples["modelplane_requests_total"]}
    assert requests == {"busy": 105, "quiet": 10, "other": 1}
    errors = {s[0]["endpoint"]: s[1] for s in samples["modelplane_request_errors_total"]}
    assert errors["busy"] == 5
    p99 = [v for labels, v in samples["modelplane_latency_seconds"]
           if labels == {"endpoint": "busy", "model": "m", "version": "1", "quantile": "0.99"}]
    assert len(p99) == 1 and 0.0015 < p99[0] < 0.0025
    assert {s[0]["endpoint"] for s in samples["modelplane_latency_seconds"]} == {"busy", "quiet"}


def test_replica_metrics_histogram_and_fold() -> None:
    metrics = ReplicaMetrics(max_series=1)
    for _ in range(9):
        metrics.observe("fraud", "m", 2, 0.0008, ok=True)
    metrics.observe("fraud", "m", 2, 0.3, ok=False)
    metrics.observe("spam", "s", 1, 0.001, ok=True)
    server = MetricsServer([metrics], "127.0.0.1", 0)
    try:
        samples = _scrape(server)
    finally:
        server.stop()
    buckets = {(s[0]["endpoint"], s[0]["le"]): s[1]
               for s in samples["modelplane_replica_predict_duration_seconds_bucket"]}
    assert buckets[("fraud", "0.001")] == 9
    assert buckets[("fraud", "0.25")] == 9
    assert buckets[("fraud", "0.5")] == 10
    assert buckets[("fraud", "+Inf")] == 10
    assert buckets[("other", "+Inf")] == 1
    errors = {s[0]["endpoint"]: s[1] for s in samples["modelplane_replica_predict_errors_total"]}
    assert errors == {"fraud": 1, "other": 0}
