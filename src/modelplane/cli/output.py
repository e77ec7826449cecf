"""Plain-text tables for the CLI; nothing here talks to a server."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from modelplane.v1 import registry_pb2, routing_pb2, telemetry_pb2, tensor_pb2


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def dtype_name(dtype: int) -> str:
    return tensor_pb2.DataType.Name(dtype).removeprefix("DATA_TYPE_").lower()  # type: ignore[arg-type]


def spec_text(spec: tensor_pb2.TensorSpec) -> str:
    dims = ", ".join("?" if d < 0 else str(d) for d in spec.shape)
    return f"{spec.name}: {dtype_name(spec.dtype)}[{dims}]"


def models_table(models: Iterable[registry_pb2.Model]) -> str:
    rows = [
        (
            m.name,
            m.latest_version,
            ", ".join(f"{a}->v{v}" for a, v in sorted(m.aliases.items())) or "-",
            m.description,
        )
        for m in models
    ]
    return table(("MODEL", "LATEST", "ALIASES", "DESCRIPTION"), rows)


def status_name(status: int) -> str:
    return registry_pb2.VersionStatus.Name(status).removeprefix("VERSION_STATUS_")  # type: ignore[arg-type]


def _when(stamp: Timestamp) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")


def versions_table(
    versions: Iterable[registry_pb2.ModelVersion], lineage: bool = False
) -> str:
    rows = [
        (
            v.version,
            status_name(v.status),
            v.sha256[:12],
            v.size_bytes,
            "; ".join(spec_text(s) for s in v.signature.inputs) or "-",
            "; ".join(spec_text(s) for s in v.signature.outputs) or "-",
            _when(v.created_at),
            *(
                (
                    " ".join(f"{k}={m:g}" for k, m in sorted(v.lineage.metrics.items())) or "-",
                    " ".join(f"{k}={t}" for k, t in sorted(v.lineage.tags.items())) or "-",
                )
                if lineage
                else ()
            ),
        )
        for v in versions
    ]
    headers = ("VERSION", "STATUS", "SHA256", "BYTES", "INPUTS", "OUTPUTS", "CREATED")
    return table((*headers, "METRICS", "TAGS") if lineage else headers, rows)


def lineage_text(version: registry_pb2.ModelVersion) -> str:
    lin = version.lineage
    pairs = [
        ("description", version.description),
        ("opset", str(version.opset)),
        ("run id", lin.source_run_id),
        ("dataset", f"{lin.dataset_uri} {lin.dataset_hash}".strip()),
        ("code commit", lin.code_commit),
        ("parent", f"v{lin.parent_version}" if lin.parent_version else ""),
        ("params", " ".join(f"{k}={v}" for k, v in sorted(lin.params.items()))),
        ("metrics", " ".join(f"{k}={v:g}" for k, v in sorted(lin.metrics.items()))),
        ("tags", " ".join(f"{k}={v}" for k, v in sorted(lin.tags.items()))),
        ("reference", version.reference_sha256[:12] + (
            f" rtol={version.reference_rtol:g} atol={version.reference_atol:g}"
            if version.reference_sha256 else "")),
    ]
    return "\n".join(f"{name + ':':<13}{value or '-'}" for name, value in pairs)


def alias_history_table(changes: Iterable[registry_pb2.AliasChange]) -> str:
    rows = [
        (
            _when(c.changed_at),
            f"v{c.previous_version}" if c.previous_version else "-",
            f"v{c.version}" if c.version else "(deleted)",
            c.actor,
            c.reason or "-",
        )
        for c in changes
    ]
    return table(("WHEN", "FROM", "TO", "ACTOR", "REASON"), rows)


def audit_table(events: Iterable[registry_pb2.AuditEvent]) -> str:
    rows = [
        (
            _when(e.time),
            e.actor,
            e.action,
            e.subject,
            _change(e.before_json, e.after_json),
            e.reason or "-",
        )
        for e in events
    ]
    return table(("WHEN", "ACTOR", "ACTION", "SUBJECT", "CHANGE", "REASON"), rows)


def _change(before: str, after: str) -> str:
    def short(text: str) -> str:
        if not text:
            return "-"
        return text if len(text) <= 60 else text[:57] + "..."

    return f"{short(before)} -> {short(after)}"


def served_at_text(served: registry_pb2.ServedAtResponse) -> str:
    if not served.revision:
        return f"endpoint {served.endpoint} had no route at that time"
    rows = [
        (t.model, f"v{t.version}" if t.version else "(unresolved)", t.alias or "-", t.weight)
        for t in served.targets
    ]
    header = f"endpoint {served.endpoint}, route revision {served.revision}:"
    return header + "\n" + table(("MODEL", "VERSION", "VIA ALIAS", "WEIGHT"), rows)


def print_json(data: Message | Iterable[Message]) -> None:
    """Protobuf messages as JSON (field names as in the proto) for scripts."""
    if isinstance(data, Message):
        out: object = MessageToDict(data, preserving_proto_field_name=True)
    else:
        out = [MessageToDict(m, preserving_proto_field_name=True) for m in data]
    print(json.dumps(out, indent=2, sort_keys=True))


def target_text(target: routing_pb2.RouteTarget) -> str:
    ref = f":{target.version}" if target.WhichOneof("ref") == "version" else f"@{target.alias}"
    return f"{target.model}{ref}={target.weight}"


def routes_table(routes: Iterable[routing_pb2.Route]) -> str:
    rows = [
        (r.endpoint, r.revision, " ".join(target_text(t) for t in r.targets)) for r in routes
    ]
    return table(("ENDPOINT", "REVISION", "TARGETS"), rows)


def stats_table(stats: Iterable[telemetry_pb2.VersionStats]) -> str:
    rows = [
        (
            s.endpoint or "-",
            f"{s.model}:{s.version}",
            s.request_count,
            s.error_count,
            s.window_request_count,
            f"{s.p50_ms:.3f}",
            f"{s.p90_ms:.3f}",
            f"{s.p99_ms:.3f}",
            f"{s.window_seconds}s",
            f"{s.drift_psi:.3f}" if s.HasField("drift_psi") else "-",
            _quality_cell(s),
        )
        for s in stats
    ]
    return table(
        ("ENDPOINT", "VERSION", "REQUESTS", "ERRORS", "IN WINDOW", "P50 ms", "P90 ms", "P99 ms",
         "WINDOW", "DRIFT PSI", "ACCURACY/MAE"),
        rows,
    )


def _quality_cell(s: telemetry_pb2.VersionStats) -> str:
    """Accuracy (class labels) or MAE (values) over the window, with the labels behind it."""
    parts = []
    if s.HasField("accuracy"):
        parts.append(f"{s.accuracy:.1%}")
    if s.HasField("mae"):
        parts.append(f"MAE {s.mae:.4g}")
    if not parts:
        return "-"
    return f"{' '.join(parts)} ({s.feedback_count} labels)"
