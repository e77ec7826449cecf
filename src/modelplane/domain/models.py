"""Registry and routing records as immutable dataclasses."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class DataType(enum.Enum):
    """Tensor element types; the names match the wire enum without its prefix."""

    BOOL = "bool"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    FLOAT16 = "float16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    # Variable-length byte strings (ONNX tensor(string)); numpy holds them as objects.
    STRING = "string"

    @property
    def numpy_name(self) -> str:
        """The numpy dtype name, which is the enum's value except for STRING."""
        return "object" if self is DataType.STRING else self.value


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: DataType
    # -1 marks a dynamic dimension.
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    created_at_ms: int
    latest_version: int = 0
    aliases: dict[str, int] = field(default_factory=dict)


class VersionStatus(enum.Enum):
    """PENDING -> READY | FAILED; READY -> ARCHIVED or FAILED (integrity); only READY serves.

    ARCHIVED is retirement: final, never routed again, kept for lineage and audit.
    """

    READY = "READY"
    PENDING = "PENDING"
    FAILED = "FAILED"
    ARCHIVED = "ARCHIVED"


@dataclass(frozen=True)
class Lineage:
    """Where a version came from; every field optional, all of it searchable."""

    source_run_id: str = ""
    dataset_uri: str = ""
    dataset_hash: str = ""
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    code_commit: str = ""
    # 0: no parent.
    parent_version: int = 0
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: int
    sha256: str
    size_bytes: int
    signature: Signature
    status: VersionStatus
    description: str
    created_at_ms: int
    lineage: Lineage = field(default_factory=Lineage)
    # Why the version is FAILED or ARCHIVED; empty otherwise.
    status_reason: str = ""
    opset: int = 0
    # Reference inputs/outputs (.npz in the artifact store); empty when none.
    reference_sha256: str = ""
    reference_rtol: float = 0.0
    reference_atol: float = 0.0
    # When garbage collection deleted the artifact (0: still stored). Only an
    # ARCHIVED version is ever purged; its record stays for lineage and audit.
    artifact_purged_at_ms: int = 0

    @property
    def servable(self) -> bool:
        return self.status is VersionStatus.READY


@dataclass(frozen=True)
class Alias:
    model: str
    alias: str
    version: int


@dataclass(frozen=True)
class AliasChange:
    """One move of an alias; ``version`` 0 when the change deleted it."""

    model: str
    alias: str
    version: int
    previous_version: int
    changed_at_ms: int
    actor: str
    reason: str
    generation: int


@dataclass(frozen=True)
class AuditEvent:
    """One entry of the audit stream; before/after/detail are JSON texts ("" when absent)."""

    event_id: str
    ts_ms: int
    generation: int
    action: str
    subject: str
    actor: str
    reason: str
    before_json: str
    after_json: str
    detail_json: str
    model: str
    endpoint: str


@dataclass(frozen=True)
class ServedTarget:
    model: str
    version: int
    weight: int
    alias: str | None = None


@dataclass(frozen=True)
class ServedAt:
    """What an endpoint routed to at one moment; revision 0 when it had no route."""

    endpoint: str
    at_ms: int
    revision: int
    targets: tuple[ServedTarget, ...]


@dataclass(frozen=True)
class RouteTarget:
    """One weighted destination of an endpoint: a pinned version or an alias."""

    model: str
    weight: int
    version: int | None = None
    alias: str | None = None
    # Dynamic batching of the version this target names: 0 = the replica's default.
    max_batch_size: int = 0
    max_wait_us: int = 0


@dataclass(frozen=True)
class ShadowTarget:
    """A version that sees ``percent`` of an endpoint's traffic; its answers are only compared."""

    model: str
    percent: float
    version: int | None = None
    alias: str | None = None


@dataclass(frozen=True)
class Route:
    endpoint: str
    targets: tuple[RouteTarget, ...]
    revision: int
    updated_at_ms: int
    shadows: tuple[ShadowTarget, ...] = ()
    # Answers when the version picked for a request fails; its weight is ignored.
    fallback: RouteTarget | None = None
    # Sticky assignment by this input's value (else only by the request key metadata).
    sticky_input: str = ""


class RouteReason(enum.Enum):
    """Why a version answered a request (or, for SHADOW, saw a mirrored copy of it)."""

    WEIGHT = "weight"
    STICKY = "sticky"
    SHADOW = "shadow"
    FALLBACK = "fallback"
    # The request named a model (and a version or alias) directly.
    PINNED = "pinned"


@dataclass(frozen=True)
class RouteRevision:
    """One entry of an endpoint's route history; revision 0 records a deletion."""

    endpoint: str
    revision: int
    ts_ms: int
    generation: int
    route: Route | None


@dataclass(frozen=True)
class VersionKey:
    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class ServingSnapshot:
    """Everything a serving replica needs to answer predictions without Redis.

    Read in one consistent pass by the replica's watcher; the predict path only
    ever looks at the snapshot it holds in memory.
    """

    routes: dict[str, Route]
    versions: dict[VersionKey, ModelVersion]
    # (model, alias) -> version
    aliases: dict[tuple[str, str], int]
    # Bumped by every registry or routing mutation; replicas report the
    # generation they serve so the control plane knows when a change is live.
    generation: int
