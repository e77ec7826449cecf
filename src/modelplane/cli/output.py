"""Plain-text tables for the CLI; nothing here talks to a server."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


def versions_table(versions: Iterable[registry_pb2.ModelVersion]) -> str:
    rows = [
        (
            v.version,
            registry_pb2.VersionStatus.Name(v.status).removeprefix("VERSION_STATUS_"),
            v.sha256[:12],
            v.size_bytes,
            "; ".join(spec_text(s) for s in v.signature.inputs),
            "; ".join(spec_text(s) for s in v.signature.outputs),
            v.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
        )
        for v in versions
    ]
    return table(("VERSION", "STATUS", "SHA256", "BYTES", "INPUTS", "OUTPUTS", "CREATED"), rows)


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
        )
        for s in stats
    ]
    return table(
        ("ENDPOINT", "VERSION", "REQUESTS", "ERRORS", "IN WINDOW", "P50 ms", "P90 ms", "P99 ms",
         "WINDOW"),
        rows,
    )
