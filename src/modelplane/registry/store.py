"""The registry store contract; every implementation passes one contract-test suite."""

from __future__ import annotations

import abc

from modelplane.domain.models import (
    Alias,
    Model,
    ModelVersion,
    Route,
    RouteTarget,
    ServingSnapshot,
    Signature,
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
    ) -> ModelVersion:
        """Allocate the model's next version number atomically and record it."""

    @abc.abstractmethod
    def get_version(self, model: str, version: int) -> ModelVersion: ...

    @abc.abstractmethod
    def list_versions(self, model: str) -> list[ModelVersion]: ...

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
    ) -> Route:
        """Compare-and-set on the route's revision, then publish the change."""

    @abc.abstractmethod
    def get_route(self, endpoint: str) -> Route: ...

    @abc.abstractmethod
    def list_routes(self) -> list[Route]: ...

    @abc.abstractmethod
    def delete_route(self, endpoint: str, expected_revision: int) -> None: ...

    @abc.abstractmethod
    def current_generation(self) -> int:
        """The generation of the latest mutation; 0 before any."""

    @abc.abstractmethod
    def snapshot(self) -> ServingSnapshot:
        """Routes, versions and aliases as one consistent view for the data plane."""
