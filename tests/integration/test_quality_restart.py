"""Drift and accuracy survive a control-plane restart, against a real Redis.

A real ``ControlPlane`` takes drift histograms, latency points and prediction
records over real OTLP/gRPC and labels over the Feedback RPC, flushes them on
its own loop, and a second control plane started from the same Redis (the first
one never got to flush at stop, as after a crash) reports the same drift score,
accuracy and MAE per version, in GetStats, ListAlerts and the CLI. Malformed
stored values cost those values only, with a warning.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import redis
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from modelplane.cli import main
from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.sample_models import linear_model
from modelplane.telemetry.drift import BIN_COUNT, INDEX_BOUNDS, DriftTracker
from modelplane.telemetry.histogram import BOUNDS_S, bucket_index
from modelplane.telemetry.names import (
    ATTR_ENDPOINT,
    ATTR_FEATURE,
    ATTR_MODEL,
    ATTR_STATUS,
    ATTR_VERSION,
    FEATURE_VALUE,
    PREDICT_DURATION,
    PREDICTIONS_EVENT,
)
from modelplane.telemetry.quality_persistence import WINDOW_TTL_SECONDS, QualityPersistence
from modelplane.v1 import telemetry_pb2, telemetry_pb2_grpc

pytestmark = pytest.mark.integration

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
Key = tuple[str, str, int]


def _attrs(version: int, **extra: str) -> list[common_pb2.KeyValue]:
    values = {ATTR_ENDPOINT: "fraud", ATTR_MODEL: "m", **extra}
    kvs = [common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
           for k, v in values.items()]
    kvs.append(common_pb2.KeyValue(key=ATTR_VERSION, value=common_pb2.AnyValue(int_value=version)))
    return kvs


def _bins(**bins: int) -> list[int]:
    counts = [0] * BIN_COUNT
    for name, n in bins.items():
        counts[int(name[1:])] = n
    return counts


def _metrics(
    points: list[tuple[int, str, list[int], float]], latency: list[tuple[int, int, float]]
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """Feature histograms (version, feature, counts, time) and latency (version, n, time)."""
    features = metrics_pb2.Metric(
        name=FEATURE_VALUE,
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=DELTA,
            data_points=[
                metrics_pb2.HistogramDataPoint(
                    attributes=_attrs(version, **{ATTR_FEATURE: feature}),
                    time_unix_nano=int(t * 1e9), count=sum(counts),
                    bucket_counts=counts, explicit_bounds=INDEX_BOUNDS,
                )
                for version, feature, counts, t in points
            ],
        ),
    )
    durations = metrics_pb2.Metric(
        name=PREDICT_DURATION,
        unit="s",
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=DELTA,
            data_points=[
                metrics_pb2.HistogramDataPoint(
                    attributes=_attrs(version, **{ATTR_STATUS: "OK"}),
                    time_unix_nano=int(t * 1e9), count=n, sum=0.002 * n,
                    bucket_counts=[n if i == bucket_index(0.002) else 0
                                   for i in range(len(BOUNDS_S) + 1)],
                    explicit_bounds=BOUNDS_S,
                )
                for version, n, t in latency
            ],
        ),
    )
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[metrics_pb2.ResourceMetrics(
            scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[features, durations])]
        )]
    )


def _predictions(records: list[dict[str, object]]) -> logs_service_pb2.ExportLogsServiceRequest:
    body = common_pb2.AnyValue(string_value=json.dumps(records))
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(
            log_records=[logs_pb2.LogRecord(event_name=PREDICTIONS_EVENT, body=body)]
        )])]
    )


@pytest.fixture()
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path, control_port=0,
        inference_port=0, telemetry_flush_interval_s=0.2,
    )


@pytest.fixture()
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


class Plane:
    """A started control plane and a channel to it; ``close`` stops both."""

    def __init__(self, settings: Settings) -> None:
        self.control = ControlPlane(settings, settings.redis_url)
        self.control.start()
        self.channel = grpc.insecure_channel(self.control.address)
        self.telemetry = telemetry_pb2_grpc.TelemetryServiceStub(self.channel)

    def quality(self) -> dict[Key, tuple[object, ...]]:
        response = self.telemetry.GetStats(
            telemetry_pb2.GetStatsRequest(endpoint="fraud", window_seconds=300), timeout=5
        )
        return {
            (s.endpoint, s.model, s.version): (
                s.drift_psi if s.HasField("drift_psi") else None,
                s.drift_ks if s.HasField("drift_ks") else None,
                s.drift_feature,
                s.feedback_count,
                s.accuracy if s.HasField("accuracy") else None,
                s.mae if s.HasField("mae") else None,
            )
            for s in response.stats
        }

    def drift_alerts(self) -> list[tuple[int, str, float]]:
        response = self.telemetry.ListAlerts(
            telemetry_pb2.ListAlertsRequest(endpoint="fraud"), timeout=5
        )
        return [(a.version, a.message, a.observed) for a in response.alerts if a.kind == "drift"]

    def close(self) -> None:
        self.channel.close()
        self.control.stop(0)


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_drift_and_accuracy_survive_a_restart(
    settings: Settings, client: redis.Redis, key_prefix: str,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    first = Plane(settings)
    planes = [first]
    try:
        registry = first.control.registry
        registry.register_version("m", "classifier", create_model=True,
                                  chunks=[linear_model(seed=1)])
        registry.register_version("m", "regressor", create_model=False,
                                  chunks=[linear_model(seed=2)])
        now = time.time()
        channel = first.channel
        metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        # v1: 500 baseline values per feature, then x[0] shifts and x[1] does not.
        answer = metrics.Export(_metrics(
            [(1, "input:x[0]", _bins(b30=250, b31=250), now - 200),
             (1, "input:x[1]", _bins(b20=250, b21=250), now - 200),
             (1, "input:x[0]", _bins(b40=150, b41=50), now - 60),
             (1, "input:x[1]", _bins(b20=110, b21=90), now - 60),
             # v2: a baseline still filling when the control plane goes away.
             (2, "output:y[0]", _bins(b10=120), now - 60)],
            [(1, 100, now - 60), (2, 40, now - 60)],
        ), timeout=5)
        assert answer.partial_success.rejected_data_points == 0
        logs = logs_service_pb2_grpc.LogsServiceStub(channel)
        records: list[dict[str, object]] = [
            {"id": f"c{i:031d}", "endpoint": "fraud", "model": "m", "version": 1,
             "kind": "index", "predicted": [1], "t": now - 90 - i}
            for i in range(30)
        ]
        records += [
            {"id": f"v{i:031d}", "endpoint": "fraud", "model": "m", "version": 2,
             "kind": "value", "predicted": [2.0], "t": now - 30}
            for i in range(10)
        ]
        shipped = logs.Export(_predictions(records), timeout=5)
        assert shipped.partial_success.rejected_log_records == 0
        for i in range(30):
            first.telemetry.Feedback(telemetry_pb2.FeedbackRequest(
                prediction_id=f"c{i:031d}", class_index=1 if i < 21 else 0), timeout=5)
        for i in range(10):
            first.telemetry.Feedback(telemetry_pb2.FeedbackRequest(
                prediction_id=f"v{i:031d}", value=2.5), timeout=5)

        before = first.quality()
        psi, ks, feature, count, accuracy, mae = before[("fraud", "m", 1)]
        assert feature == "input:x[0]" and isinstance(psi, float) and isinstance(ks, float)
        assert psi > 1.0 and 0.5 < ks <= 1.0
        assert (count, accuracy, mae) == (30, pytest.approx(0.7), None)
        assert before[("fraud", "m", 2)] == (None, None, "", 10, None, pytest.approx(0.5))
        [(version, message, observed)] = first.drift_alerts()
        assert version == 1 and observed == pytest.approx(psi)
        assert message.startswith("input:x[0]: PSI ") and "vs a baseline of 500" in message

        # The flush loop writes on its own: wait for the last feedback to be in Redis.
        series = {v: json.dumps(["fraud", "m", v], separators=(",", ":")) for v in (1, 2)}
        v2_second = f"{key_prefix}:tel:quality:slots:{series[2]}:{int(now - 30) // 600}"
        _wait_until(lambda: client.hget(v2_second, str(int(now - 30))) == "[0,0,10,5.0]",
                    "the feedback flush")
        v1_base = f"{key_prefix}:tel:drift:base:{series[1]}"
        v2_base = f"{key_prefix}:tel:drift:base:{series[2]}"
        assert json.loads(client.hget(v1_base, "input:x[0]") or "{}")["n"] == 500
        assert json.loads(client.hget(v2_base, "output:y[0]") or "{}")["n"] == 120
        # Baselines stay while the version does; windowed keys expire after the hour.
        assert client.ttl(v1_base) == -1
        assert 0 < client.ttl(v2_second) <= WINDOW_TTL_SECONDS

        # A second control plane on the same Redis, the first one never flushing at stop.
        second = Plane(settings)
        planes.append(second)
        assert second.quality() == before
        assert second.drift_alerts() == [(version, message, pytest.approx(observed))]

        flags = ["--control", second.control.address, "--inference", second.control.address]
        capsys.readouterr()
        assert main(["stats", "fraud", "--window", "300", *flags]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[-3:] == ["DRIFT", "PSI", "ACCURACY/MAE"]
        v1_row = next(line for line in table if "m:1" in line)
        v2_row = next(line for line in table if "m:2" in line)
        assert f"{psi:.3f}" in v1_row and v1_row.endswith("70.0% (30 labels)")
        assert v2_row.split()[-5:] == ["-", "MAE", "0.5", "(10", "labels)"]
        assert main(["alerts", "fraud", *flags]) == 0
        assert f"[drift] fraud m:1: input:x[0]: PSI {psi:.3f}" in capsys.readouterr().out

        # v2's baseline keeps filling where it stopped: 380 more complete its 500.
        metrics2 = metrics_service_pb2_grpc.MetricsServiceStub(second.channel)
        metrics2.Export(_metrics([(2, "output:y[0]", _bins(b10=380), now - 20),
                                  (2, "output:y[0]", _bins(b50=150), now - 20)], []),
                        timeout=5)
        psi2, _, feature2, *_ = second.quality()[("fraud", "m", 2)]
        assert feature2 == "output:y[0]" and psi2 is not None and psi2 > 1.0

        # Malformed state: a truncated baseline, a bad feedback second, a bad series.
        client.set(v2_base, "not a hash")
        client.hset(v1_base, "input:x[1]", '{"n":500,"c":[[20,250],[21,')
        v1_second = f"{key_prefix}:tel:quality:slots:{series[1]}:{int(now - 90) // 600}"
        client.hset(v1_second, str(int(now - 90)), "[1,")
        client.sadd(f"{key_prefix}:tel:drift:series", '["fraud","m"')
        caplog.set_level(logging.WARNING, logger="modelplane.telemetry.quality_persistence")
        third = Plane(settings)
        planes.append(third)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("baseline" in w and "input:x[1]" in w and "not JSON" in w for w in warnings)
        assert any("WRONGTYPE" in w for w in warnings)
        assert any("feedback second" in w for w in warnings)
        # What was intact is back: x[0]'s baseline and window, 29 of v1's 30 labels.
        psi3, _, feature3, count3, accuracy3, _ = third.quality()[("fraud", "m", 1)]
        assert feature3 == "input:x[0]" and psi3 == pytest.approx(psi)
        assert count3 == 29 and accuracy3 == pytest.approx(20 / 29)
    finally:
        for plane in reversed(planes):
            plane.close()


def test_a_filled_baseline_is_written_at_once_and_dropped_with_its_version(
    client: redis.Redis, redis_url: str, key_prefix: str
) -> None:
    tracker = DriftTracker(baseline_count=100)
    gone: set[tuple[str, int]] = set()
    writer = redis.Redis.from_url(redis_url)
    persistence = QualityPersistence(
        writer, key_prefix, tracker, None,
        version_exists=lambda model, version: (model, version) not in gone,
    )
    persistence.start(interval_s=60.0)  # far longer than the test: only the wake can write
    try:
        base = f'{key_prefix}:tel:drift:base:["fraud","m",1]'
        tracker.add("fraud", "m", 1, "f", _bins(b3=60), time.time())
        time.sleep(0.2)
        assert client.hget(base, "f") is None  # filling: waits for the periodic flush
        tracker.add("fraud", "m", 1, "f", _bins(b3=60), time.time())
        _wait_until(lambda: client.hget(base, "f") == '{"n":100,"c":[[3,100]]}',
                    "the captured baseline", timeout_s=2.0)
        assert persistence.forget_deleted_versions() == 0
        gone.add(("m", 1))
        assert persistence.forget_deleted_versions() == 1
        assert client.exists(base) == 0
        assert tracker.versions() == []
        assert client.smembers(f"{key_prefix}:tel:drift:series") == set()
    finally:
        persistence.stop()
        writer.close()


def test_list_alerts_names_the_version_whose_accuracy_dropped(settings: Settings) -> None:
    plane = Plane(settings)
    try:
        for seed in (1, 2):
            plane.control.registry.register_version(
                "m", f"v{seed}", create_model=seed == 1, chunks=[linear_model(seed=seed)]
            )
        now = time.time()
        # v1 (the most labelled: the stable one) is right 27 times in 30; v2 12 in 24.
        records: list[dict[str, object]] = [
            {"id": f"s{i:031d}", "endpoint": "fraud", "model": "m", "version": 1,
             "kind": "index", "predicted": [1], "t": now - 20}
            for i in range(30)
        ] + [
            {"id": f"c{i:031d}", "endpoint": "fraud", "model": "m", "version": 2,
             "kind": "index", "predicted": [1], "t": now - 20}
            for i in range(24)
        ]
        logs = logs_service_pb2_grpc.LogsServiceStub(plane.channel)
        logs.Export(_predictions(records), timeout=5)
        for i in range(30):
            plane.telemetry.Feedback(telemetry_pb2.FeedbackRequest(
                prediction_id=f"s{i:031d}", class_index=1 if i < 27 else 0), timeout=5)
        for i in range(24):
            plane.telemetry.Feedback(telemetry_pb2.FeedbackRequest(
                prediction_id=f"c{i:031d}", class_index=1 if i < 12 else 0), timeout=5)

        response = plane.telemetry.ListAlerts(
            telemetry_pb2.ListAlertsRequest(endpoint="fraud"), timeout=5
        )
        accuracy = [a for a in response.alerts if a.kind == "accuracy"]
        assert [(a.model, a.version) for a in accuracy] == [("m", 2)]
        assert accuracy[0].observed == pytest.approx(0.5)
        assert accuracy[0].message == (
            "accuracy 0.500 over 24 labels is 0.400 below m:1 (0.900 over 30 labels)"
        )
        other = plane.telemetry.ListAlerts(
            telemetry_pb2.ListAlertsRequest(endpoint="checkout"), timeout=5
        )
        assert [a for a in other.alerts if a.kind == "accuracy"] == []
    finally:
        plane.close()
