"""Telemetry commands: stats, latency (now and over time), alerts, feedback."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelplane.cli.common import client_from, client_options
from modelplane.cli.output import stats_table
from modelplane.v1 import telemetry_pb2

SPARK_LEVELS = "▁▂▃▄▅▆▇█"


def add_commands(sub: Any) -> None:
    cmd = sub.add_parser(
        "stats", parents=[client_options()], help="per-version request counts and latency"
    )
    cmd.add_argument("endpoint", nargs="?")
    cmd.add_argument("--window", type=int, default=60, help="seconds the percentiles cover")
    cmd.set_defaults(handler=_cmd_stats)

    cmd = sub.add_parser(
        "latency",
        parents=[client_options()],
        help="per-version latency percentiles now and over time (sparklines, --png)",
    )
    cmd.add_argument("endpoint")
    cmd.add_argument("--window", type=int, default=60, help="seconds 'now' covers (60)")
    cmd.add_argument("--over", type=int, default=3600, help="seconds of history (3600)")
    cmd.add_argument("--step", type=int, default=0, help="seconds per point (over/30)")
    cmd.add_argument("--png", type=Path, help="also write a plot of p50/p99 over time")
    cmd.set_defaults(handler=_cmd_latency)

    cmd = sub.add_parser(
        "alerts",
        parents=[client_options()],
        help="latency regressions, error bursts and drift, with exemplar trace ids",
    )
    cmd.add_argument("endpoint", nargs="?")
    cmd.add_argument("--window", type=int, default=300, help="recent seconds compared (300)")
    cmd.set_defaults(handler=_cmd_alerts)

    cmd = sub.add_parser(
        "feedback",
        parents=[client_options()],
        help="ground truth for an earlier prediction (accuracy / MAE per version)",
    )
    cmd.add_argument("prediction_id")
    cmd.add_argument("label", help="a class index, a class name or a number")
    cmd.add_argument(
        "--kind",
        choices=("auto", "index", "name", "value"),
        default="auto",
        help="how to read LABEL; auto: integer -> index, number -> value, else name",
    )
    cmd.add_argument("--row", type=int, default=0, help="row of a batched prediction")
    cmd.set_defaults(handler=_cmd_feedback)


def _cmd_stats(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        print(stats_table(client.stats(args.endpoint or "", args.window)))
    return 0


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, scaled to the largest; blanks where there is no data."""
    top = max(values, default=0.0)
    if top <= 0:
        return " " * len(values)
    chars = []
    for value in values:
        if value <= 0:
            chars.append(" ")
        else:
            level = max(math.ceil(value / top * len(SPARK_LEVELS)) - 1, 0)
            chars.append(SPARK_LEVELS[level])
    return "".join(chars)


def latency_report(
    stats: Sequence[telemetry_pb2.VersionStats],
    series: Sequence[telemetry_pb2.LatencySeries],
    window: int,
) -> str:
    lines = []
    by_version = {(s.model, s.version): s for s in series}
    for s in stats:
        errors = s.window_error_count / s.window_request_count if s.window_request_count else 0.0
        lines.append(
            f"{s.model}:{s.version}  last {window}s: {s.window_request_count} req, "
            f"{errors:.1%} err, p50 {s.p50_ms:.2f}  p90 {s.p90_ms:.2f}  "
            f"p99 {s.p99_ms:.2f}  p99.9 {s.p999_ms:.2f} ms"
        )
        history = by_version.get((s.model, s.version))
        if history is not None and history.points:
            p99 = [p.p99_ms for p in history.points]
            p50 = [p.p50_ms for p in history.points]
            span = len(history.points) * history.step_seconds
            lines.append(
                f"    p99 {sparkline(p99)}  max {max(p99):.2f} ms  "
                f"(last {span}s, {history.step_seconds}s/char)"
            )
            lines.append(f"    p50 {sparkline(p50)}  max {max(p50):.2f} ms")
        if s.exemplar_trace_ids:
            lines.append(f"    slowest traces: {', '.join(s.exemplar_trace_ids[:3])}")
    return "\n".join(lines) if lines else "no traffic in the window"


def _cmd_latency(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        stats = client.stats(args.endpoint, args.window)
        response = client.telemetry.GetLatencySeries(
            telemetry_pb2.GetLatencySeriesRequest(
                endpoint=args.endpoint, window_seconds=args.over, step_seconds=args.step
            )
        )
    print(f"endpoint {args.endpoint}")
    print(latency_report(stats, list(response.series), args.window))
    if args.png:
        write_png(args.png, args.endpoint, list(response.series))
        print(f"plot written to {args.png}")
    return 0


def write_png(path: Path, endpoint: str, series: Sequence[telemetry_pb2.LatencySeries]) -> None:
    # Imported here: matplotlib is slow to import and only this command needs it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.5))
    now = time.time()
    for s in series:
        xs = [(p.start_unix_s - now) / 60.0 for p in s.points if p.requests]
        label = f"{s.model}:{s.version}"
        line = axis.plot(xs, [p.p99_ms for p in s.points if p.requests], label=f"{label} p99")
        axis.plot(xs, [p.p50_ms for p in s.points if p.requests], linestyle="--",
                  color=line[0].get_color(), label=f"{label} p50")
    axis.set_xlabel("minutes ago")
    axis.set_ylabel("latency (ms)")
    axis.set_title(f"{endpoint}: latency per version")
    axis.grid(True, alpha=0.3)
    if series:
        axis.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def alerts_table(alerts: Sequence[telemetry_pb2.TelemetryAlert]) -> str:
    if not alerts:
        return "no alerts"
    lines = []
    for a in alerts:
        lines.append(f"[{a.kind}] {a.endpoint} {a.model}:{a.version}: {a.message}")
        if a.exemplar_trace_ids:
            lines.append(f"    slowest traces: {', '.join(a.exemplar_trace_ids)}")
    return "\n".join(lines)


def _cmd_alerts(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        response = client.telemetry.ListAlerts(
            telemetry_pb2.ListAlertsRequest(endpoint=args.endpoint or "",
                                            window_seconds=args.window)
        )
    print(alerts_table(list(response.alerts)))
    return 0


def feedback_request(
    prediction_id: str, label: str, kind: str = "auto", row: int = 0
) -> telemetry_pb2.FeedbackRequest:
    """The request for LABEL read as ``kind``; ValueError names what did not parse."""
    request = telemetry_pb2.FeedbackRequest(prediction_id=prediction_id, row=row)
    if kind == "auto":
        try:
            request.class_index = int(label)
            return request
        except ValueError:
            pass
        try:
            request.value = float(label)
            return request
        except ValueError:
            request.class_name = label
            return request
    try:
        if kind == "index":
            request.class_index = int(label)
        elif kind == "value":
            request.value = float(label)
        else:
            request.class_name = label
    except ValueError:
        raise ValueError(f"label: {label!r} is not a {kind}") from None
    return request


def _cmd_feedback(args: argparse.Namespace) -> int:
    request = feedback_request(args.prediction_id, args.label, args.kind, args.row)
    with client_from(args) as client:
        answer = client.telemetry.Feedback(request)
    verdict = "correct" if answer.correct else "wrong"
    if request.WhichOneof("label") == "value":
        verdict = f"absolute error {answer.absolute_error:g}"
    print(f"recorded for {answer.model}:{answer.version} on {answer.endpoint or '-'}: {verdict}")
    return 0
