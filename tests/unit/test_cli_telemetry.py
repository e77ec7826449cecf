"""The telemetry and rollout commands' parsing and rendering, without a server."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modelplane.cli.rollout import parse_duration, parse_steps, parse_version, start_request
from modelplane.cli.telemetry import (
    alerts_table,
    feedback_request,
    latency_report,
    sparkline,
    write_png,
)
from modelplane.v1 import telemetry_pb2


def test_durations_steps_and_versions() -> None:
    assert parse_duration("60s") == 60.0
    assert parse_duration("2m") == 120.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1.5") == 1.5
    with pytest.raises(ValueError, match=r"interval: expected e\.g\. 60s"):
        parse_duration("soon")
    assert parse_steps("5,25,50,100") == [5, 25, 50, 100]
    with pytest.raises(ValueError, match="steps: expected comma-separated"):
        parse_steps("5,x")
    assert parse_version("3") == ("", 3)
    assert parse_version("fraud:3") == ("fraud", 3)
    with pytest.raises(ValueError, match="--to: expected VERSION or MODEL:VERSION"):
        parse_version("fraud:latest")


def test_start_request_carries_every_gate() -> None:
    args = argparse.Namespace(
        endpoint="fraud", to="m:2", steps="5,25,50,100", interval="60s", max_p99_ratio=1.2,
        max_error_rate=0.01, min_accuracy_delta=-0.01, min_requests=0,
    )
    request = start_request(args)
    assert (request.model, request.version, list(request.steps)) == ("m", 2, [5, 25, 50, 100])
    assert request.interval_seconds == 60.0
    assert request.gates.max_p99_ratio == 1.2
    assert request.gates.min_accuracy_delta == -0.01


def test_feedback_labels_are_read_by_kind() -> None:
    assert feedback_request("p", "3").WhichOneof("label") == "class_index"
    assert feedback_request("p", "3.5").value == 3.5
    assert feedback_request("p", "cat").class_name == "cat"
    assert feedback_request("p", "3", kind="value").value == 3.0
    assert feedback_request("p", "3", kind="name").class_name == "3"
    with pytest.raises(ValueError, match="label: 'cat' is not a index"):
        feedback_request("p", "cat", kind="index")


def test_sparkline_scales_to_the_largest_and_leaves_gaps_blank() -> None:
    assert sparkline([1.0, 0.0, 8.0, 4.0]) == "▁ █▄"
    assert sparkline([0.0, 0.0]) == "  "
    assert sparkline([]) == ""


def _series() -> telemetry_pb2.LatencySeries:
    return telemetry_pb2.LatencySeries(
        endpoint="fraud", model="m", version=2, step_seconds=60,
        points=[telemetry_pb2.LatencyPoint(start_unix_s=1_800_000_000 + 60 * i, requests=10,
                                           p50_ms=1.0 + i, p99_ms=2.0 * (i + 1))
                for i in range(4)],
    )


def test_latency_report_and_alerts_show_percentiles_history_and_traces() -> None:
    stats = telemetry_pb2.VersionStats(
        endpoint="fraud", model="m", version=2, window_request_count=200, window_error_count=2,
        p50_ms=1.0, p90_ms=2.0, p99_ms=8.0, p999_ms=9.5, exemplar_trace_ids=["ab" * 16],
    )
    text = latency_report([stats], [_series()], 60)
    assert "m:2  last 60s: 200 req, 1.0% err, p50 1.00  p90 2.00  p99 8.00  p99.9 9.50 ms" in text
    assert "p99 ▂▄▆█  max 8.00 ms  (last 240s, 60s/char)" in text
    assert "slowest traces: " + "ab" * 16 in text
    alert = telemetry_pb2.TelemetryAlert(kind="latency_regression_vs_stable", endpoint="fraud",
                                         model="m", version=2, message="p99 is 3x",
                                         exemplar_trace_ids=["cd" * 16])
    assert alerts_table([alert]) == (
        "[latency_regression_vs_stable] fraud m:2: p99 is 3x\n    slowest traces: " + "cd" * 16
    )
    assert alerts_table([]) == "no alerts"


def test_png_is_written(tmp_path: Path) -> None:
    path = tmp_path / "latency.png"
    write_png(path, "fraud", [_series()])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
