"""The registry store contract; every implementation passes one contract-test suite."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator

from modelplane.domain.models import (
    Alias,
    AliasChange,
    AuditEvent,
    Lineage,
    Model,
    ModelVersion,
    Route,
    RouteRevision,
    RouteTarget,
    ServedAt,
    ServingSnapshot,
    ShadowTarget,
    Signature,
    VersionStatus,
)


class RegistryStore(abc.ABC):
    """Models, versions, aliases and routes. Each mutation is atomic and audited.

    Raises ``NotFound`` for unknown names, ``AlreadyExists`` on duplicate
    models, ``Aborted`` on a stale route revision and ``Unavailable`` when the
    backing store cannot be reached.
    """

    @abc.abstractmethod
    def create_model(self, name: str, description: str, now_ms: int) -> Model: ...

    @abc.abstractmethod
    def get_model(self, name: str) -> Model: ...

    @abc.abstractmethod
    def list_models(self) -> list[Model]: ...

    @abc.abstractmethod
    def add_version(
        self,
        model: str,
        sha256: str,
        size_bytes: int,
        signature: Signature,
        description: str,
        now_ms: int,
        *,
        lineage: Lineage | None = None,
        status: VersionStatus = VersionStatus.READY,
        opset: int = 0,
        reference_sha256: str = "",
        reference_rtol: float = 0.0,
        reference_atol: float = 0.0,
        idempotency_key: str = "",
    ) -> ModelVersion:
        """Allocate the model's next version number atomically and record it.

        With an ``idempotency_key`` already used for this model, records nothing
        and returns the version that key created.
        """

    @abc.abstractmethod
    def find_idempotent(self, model: str, key: str) -> ModelVersion | None:
        """The live version an idempotency key created, if any."""

    @abc.abstractmethod
    def get_version(self, model: str, version: int) -> ModelVersion: ...

    @abc.abstractmethod
    def list_versions(self, model: str) -> list[ModelVersion]: ...

    @abc.abstractmethod
    def update_version(
        self,
        model: str,
        version: int,
        change: Callable[[ModelVersion], ModelVersion],
        action: str,
        refuse_if_routed: bool = False,
    ) -> ModelVersion:
        """Compare-and-set of one version (status changes), audited as ``action``.

        ``refuse_if_routed``: FailedPrecondition while a route reaches the version.
        """

    @abc.abstractmethod
    def delete_version(self, model: str, version: int) -> None:
        """FailedPrecondition naming the aliases and routes that still reference it."""

    @abc.abstractmethod
    def set_alias(self, model: str, alias: str, version: int) -> Alias: ...

    @abc.abstractmethod
    def get_alias(self, model: str, alias: str) -> Alias: ...

    @abc.abstractmethod
    def delete_alias(self, model: str, alias: str) -> None: ...

    @abc.abstractmethod
    def set_route(
        self,
        endpoint: str,
        targets: tuple[RouteTarget, ...],
        expected_revision: int,
        now_ms: int,
        shadows: tuple[ShadowTarget, ...] = (),
        fallback: RouteTarget | None = None,
        sticky_input: str = "",
    ) -> Route:
        """Compare-and-set on the route's revision, then publish the change."""

    @abc.abstractmethod
    def route_history(self, endpoint: str) -> list[RouteRevision]:
        """Every revision the endpoint's route went through, oldest first."""

    @abc.abstractmethod
    def get_route(self, endpoint: str) -> Route: ...

    @abc.abstractmethod
    def list_routes(self) -> list[Route]: ...

    @abc.abstractmethod
    def delete_route(self, endpoint: str, expected_revision: int) -> None: ...

    @abc.abstractmethod
    def retire_route(self, endpoint: str, expected_revision: int) -> int:
        """Removes the route, audited ``retire_endpoint``; the revision that was in force."""

    @abc.abstractmethod
    def record_event(
        self,
        action: str,
        subject: str,
        *,
        model: str = "",
        endpoint: str = "",
        detail: str = "{}",
        before: str = "",
        after: str = "",
    ) -> str:
        """Appends an audit event for something that changes nothing served; its id."""

    @abc.abstractmethod
    def alias_history(self, model: str, alias: str) -> list[AliasChange]:
        """Every move of the alias, oldest first."""

    @abc.abstractmethod
    def audit_events(
        self, since_ms: int | None = None, until_ms: int | None = None
    ) -> Iterator[AuditEvent]:
        """The audit trail, oldest first."""

    @abc.abstractmethod
    def served_at(self, endpoint: str, at_ms: int) -> ServedAt:
        """The route in force at ``at_ms``, its aliases resolved as they were then."""

    @abc.abstractmethod
    def current_generation(self) -> int:
        """The generation of the latest mutation; 0 before any."""

    @abc.abstractmethod
    def snapshot(self) -> ServingSnapshot:
        """Routes, versions and aliases as one consistent view for the data plane."""
