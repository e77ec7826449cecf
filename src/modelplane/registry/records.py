"""JSON records the Redis store keeps for versions and route targets.

JSON rather than one hash field per attribute: a version is written once and
read whole, and a route's targets are replaced as a unit by compare-and-set.
"""

from __future__ import annotations

import json
from typing import Any

from modelplane.domain.models import (
    DataType,
    Lineage,
    ModelVersion,
    RouteTarget,
    ShadowTarget,
    Signature,
    TensorSpec,
    VersionStatus,
)


def _spec_to_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "dtype": spec.dtype.value, "shape": list(spec.shape)}


def _spec_from_json(data: dict[str, Any]) -> TensorSpec:
    return TensorSpec(
        name=str(data["name"]),
        dtype=DataType(data["dtype"]),
        shape=tuple(int(dim) for dim in data["shape"]),
    )


def signature_to_json(signature: Signature) -> dict[str, Any]:
    return {
        "inputs": [_spec_to_json(spec) for spec in signature.inputs],
        "outputs": [_spec_to_json(spec) for spec in signature.outputs],
    }


def signature_from_json(data: dict[str, Any]) -> Signature:
    return Signature(
        inputs=tuple(_spec_from_json(spec) for spec in data["inputs"]),
        outputs=tuple(_spec_from_json(spec) for spec in data["outputs"]),
    )


def lineage_to_json(lineage: Lineage) -> dict[str, Any]:
    return {
        "source_run_id": lineage.source_run_id,
        "dataset_uri": lineage.dataset_uri,
        "dataset_hash": lineage.dataset_hash,
        "params": dict(lineage.params),
        "metrics": dict(lineage.metrics),
        "code_commit": lineage.code_commit,
        "parent_version": lineage.parent_version,
        "tags": dict(lineage.tags),
    }


def lineage_from_json(data: dict[str, Any]) -> Lineage:
    return Lineage(
        source_run_id=str(data.get("source_run_id", "")),
        dataset_uri=str(data.get("dataset_uri", "")),
        dataset_hash=str(data.get("dataset_hash", "")),
        params={str(k): str(v) for k, v in (data.get("params") or {}).items()},
        metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
        code_commit=str(data.get("code_commit", "")),
        parent_version=int(data.get("parent_version", 0)),
        tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
    )


def version_to_json(version: ModelVersion) -> dict[str, Any]:
    """Everything but model and number, which are the record's address."""
    record: dict[str, Any] = {
        "sha256": version.sha256,
        "size_bytes": version.size_bytes,
        "signature": signature_to_json(version.signature),
        "status": version.status.value,
        "status_reason": version.status_reason,
        "description": version.description,
        "created_at_ms": version.created_at_ms,
        "lineage": lineage_to_json(version.lineage),
        "opset": version.opset,
        "reference_sha256": version.reference_sha256,
        "reference_rtol": version.reference_rtol,
        "reference_atol": version.reference_atol,
    }
    if version.artifact_purged_at_ms:
        # Only when set: records of stored artifacts keep their exact form.
        record["artifact_purged_at_ms"] = version.artifact_purged_at_ms
    return record


def version_record(
    sha256: str,
    size_bytes: int,
    signature: Signature,
    description: str,
    now_ms: int,
    **extra: Any,
) -> str:
    """The stored form of a version; its number is the hash field it is stored under.

    ``extra`` carries the optional ModelVersion fields (lineage, status, opset, ...);
    without them the record is a READY version with empty lineage.
    """
    version = ModelVersion(
        model="",
        version=0,
        sha256=sha256,
        size_bytes=size_bytes,
        signature=signature,
        status=extra.pop("status", VersionStatus.READY),
        description=description,
        created_at_ms=now_ms,
        **extra,
    )
    return json.dumps(version_to_json(version), separators=(",", ":"))


def version_from_record(model: str, version: int, record: str) -> ModelVersion:
    data = json.loads(record)
    return ModelVersion(
        model=model,
        version=version,
        sha256=str(data["sha256"]),
        size_bytes=int(data["size_bytes"]),
        signature=signature_from_json(data["signature"]),
        status=VersionStatus(data["status"]),
        description=str(data["description"]),
        created_at_ms=int(data["created_at_ms"]),
        lineage=lineage_from_json(data.get("lineage") or {}),
        status_reason=str(data.get("status_reason", "")),
        opset=int(data.get("opset", 0)),
        reference_sha256=str(data.get("reference_sha256", "")),
        reference_rtol=float(data.get("reference_rtol", 0.0)),
        reference_atol=float(data.get("reference_atol", 0.0)),
        artifact_purged_at_ms=int(data.get("artifact_purged_at_ms", 0)),
    )


def target_to_json(target: RouteTarget) -> dict[str, Any]:
    # Absent keys rather than nulls: the Lua side compares fields directly and
    # cjson would turn a null into a sentinel that is neither nil nor a string.
    data: dict[str, Any] = {"model": target.model, "weight": target.weight}
    if target.version is not None:
        data["version"] = target.version
    if target.alias is not None:
        data["alias"] = target.alias
    # Only when set: records written before batching existed read back the same.
    if target.max_batch_size:
        data["max_batch_size"] = target.max_batch_size
    if target.max_wait_us:
        data["max_wait_us"] = target.max_wait_us
    return data


def targets_record(targets: tuple[RouteTarget, ...]) -> str:
    return json.dumps([target_to_json(target) for target in targets], separators=(",", ":"))


def targets_from_record(record: str) -> tuple[RouteTarget, ...]:
    return tuple(
        RouteTarget(
            model=str(item["model"]),
            weight=int(item["weight"]),
            version=int(item["version"]) if "version" in item else None,
            alias=str(item["alias"]) if "alias" in item else None,
            max_batch_size=int(item.get("max_batch_size", 0)),
            max_wait_us=int(item.get("max_wait_us", 0)),
        )
        for item in json.loads(record)
    )


def _ref_to_json(model: str, version: int | None, alias: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"model": model}
    if version is not None:
        data["version"] = version
    if alias is not None:
        data["alias"] = alias
    return data


def policy_record(
    shadows: tuple[ShadowTarget, ...], fallback: RouteTarget | None, sticky_input: str
) -> str:
    """A route's shadows, fallback and sticky input: the route hash's ``policy`` field."""
    data: dict[str, Any] = {
        "shadows": [
            {**_ref_to_json(s.model, s.version, s.alias), "percent": s.percent} for s in shadows
        ],
    }
    if fallback is not None:
        data["fallback"] = target_to_json(fallback)
    if sticky_input:
        data["sticky_input"] = sticky_input
    return json.dumps(data, separators=(",", ":"))


def policy_from_record(
    record: str | None,
) -> tuple[tuple[ShadowTarget, ...], RouteTarget | None, str]:
    """(shadows, fallback, sticky_input); an absent record (older routes) means none."""
    if not record:
        return (), None, ""
    data = json.loads(record)
    shadows = tuple(
        ShadowTarget(
            model=str(item["model"]),
            percent=float(item["percent"]),
            version=int(item["version"]) if "version" in item else None,
            alias=str(item["alias"]) if "alias" in item else None,
        )
        for item in data.get("shadows") or []
    )
    fallback = None
    if data.get("fallback"):
        item = data["fallback"]
        fallback = RouteTarget(
            model=str(item["model"]),
            weight=int(item.get("weight", 0)),
            version=int(item["version"]) if "version" in item else None,
            alias=str(item["alias"]) if "alias" in item else None,
            max_batch_size=int(item.get("max_batch_size", 0)),
            max_wait_us=int(item.get("max_wait_us", 0)),
        )
    return shadows, fallback, str(data.get("sticky_input", ""))
