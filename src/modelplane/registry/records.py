"""JSON records the Redis store keeps for versions and route targets.

JSON rather than one hash field per attribute: a version is written once and
read whole, and a route's targets are replaced as a unit by compare-and-set.
"""

from __future__ import annotations

import json
from typing import Any

from modelplane.domain.models import (
    DataType,
    ModelVersion,
    RouteTarget,
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


def version_record(
    sha256: str, size_bytes: int, signature: Signature, description: str, now_ms: int
) -> str:
    """The stored form of a version; its number is the hash field it is stored under."""
    return json.dumps(
        {
            "sha256": sha256,
            "size_bytes": size_bytes,
            "signature": signature_to_json(signature),
            "status": VersionStatus.READY.value,
            "description": description,
            "created_at_ms": now_ms,
        },
        separators=(",", ":"),
    )


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
    )


def target_to_json(target: RouteTarget) -> dict[str, Any]:
    # Absent keys rather than nulls: the Lua side compares fields directly and
    # cjson would turn a null into a sentinel that is neither nil nor a string.
    data: dict[str, Any] = {"model": target.model, "weight": target.weight}
    if target.version is not None:
        data["version"] = target.version
    if target.alias is not None:
        data["alias"] = target.alias
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
        )
        for item in json.loads(record)
    )
