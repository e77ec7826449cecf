"""Registry and routing use cases: what the gRPC servicers and the CLI both call.

Validation of requests lives here, once, so every entry point rejects the same
things with the same messages; the store only enforces what must be atomic.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from modelplane.domain.errors import AlreadyExists, InvalidArgument, ModelplaneError, NotFound
from modelplane.domain.models import Alias, Model, ModelVersion, Route, RouteTarget
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.names import validate_alias, validate_name, validate_version_number
from modelplane.registry.onnx_inspect import inspect_onnx
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.store import RegistryStore

_log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3


class Registry:
    def __init__(
        self,
        store: RegistryStore,
        artifacts: ArtifactStore,
        replicas: ReplicaDirectory | None = None,
        clock: Callable[[], float] = time.time,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        route_ack_timeout_s: float = 5.0,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.replicas = replicas
        self._clock = clock
        self.max_upload_bytes = max_upload_bytes
        self.route_ack_timeout_s = route_ack_timeout_s

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ------------------------------------------------------------------ models

    def create_model(self, name: str, description: str = "") -> Model:
        validate_name("name", name)
        return self.store.create_model(name, description, self._now_ms())

    def get_model(self, name: str) -> Model:
        return self.store.get_model(name)

    def list_models(self) -> list[Model]:
        return self.store.list_models()

    # ---------------------------------------------------------------- versions

    def register_version(
        self,
        model: str,
        description: str,
        create_model: bool,
        chunks: Iterable[bytes],
    ) -> ModelVersion:
        """Streams an ONNX file into the artifact store and records it as the next version.

        Fails before reading a byte when the model is unknown (unless
        ``create_model``). On any failure nothing is kept: the staged file is
        removed, no model is created and no version number is used up.
        """
        validate_name("model", model)
        if not create_model:
            self.store.get_model(model)
        staged = self.artifacts.write_stream(chunks, self.max_upload_bytes)
        committed = False
        try:
            if staged.size_bytes == 0:
                raise InvalidArgument("chunk: the upload is empty; expected an ONNX file")
            signature = inspect_onnx(staged.path)
            if create_model:
                # Only now: a failed upload must not leave an empty model behind.
                with contextlib.suppress(AlreadyExists):
                    self.store.create_model(model, "", self._now_ms())
            self.artifacts.commit(staged)
            committed = True
            # An add_version that fails after the commit leaves an unreferenced
            # file: harmless, since artifacts are addressed by content, and
            # deleting it could race a concurrent upload of the same bytes.
            return self.store.add_version(
                model,
                staged.sha256,
                staged.size_bytes,
                signature,
                description,
                self._now_ms(),
            )
        finally:
            if not committed:
                self.artifacts.discard(staged)

    def get_version(self, model: str, version: int) -> ModelVersion:
        validate_version_number("version", version)
        return self.store.get_version(model, version)

    def list_versions(self, model: str) -> list[ModelVersion]:
        return self.store.list_versions(model)

    # ----------------------------------------------------------------- aliases

    def set_alias(self, model: str, alias: str, version: int) -> Alias:
        validate_name("model", model)
        validate_alias("alias", alias)
        validate_version_number("version", version)
        result = self.store.set_alias(model, alias, version)
        # Routes may name the alias: let replicas load the version before we answer.
        self._await_replicas(f"alias '{alias}' of model '{model}'")
        return result

    def get_alias(self, model: str, alias: str) -> Alias:
        return self.store.get_alias(model, alias)

    def delete_alias(self, model: str, alias: str) -> None:
        self.store.delete_alias(model, alias)

    # ------------------------------------------------------------------ routes

    def set_route(
        self, endpoint: str, targets: Iterable[RouteTarget], expected_revision: int
    ) -> Route:
        validate_name("endpoint", endpoint)
        checked = tuple(targets)
        self._validate_targets(checked)
        if expected_revision < 0:
            raise InvalidArgument(
                f"expected_revision: expected 0 (new endpoint) or the current revision, "
                f"got {expected_revision}"
            )
        route = self.store.set_route(endpoint, checked, expected_revision, self._now_ms())
        self._await_replicas(f"endpoint '{endpoint}' revision {route.revision}")
        return route

    def get_route(self, endpoint: str) -> Route:
        return self.store.get_route(endpoint)

    def list_routes(self) -> list[Route]:
        return self.store.list_routes()

    def delete_route(self, endpoint: str, expected_revision: int = 0) -> None:
        """``expected_revision`` 0 deletes the route whatever its revision."""
        if expected_revision < 0:
            raise InvalidArgument(
                f"expected_revision: expected 0 (any) or the current revision, "
                f"got {expected_revision}"
            )
        self.store.delete_route(endpoint, expected_revision)

    def _validate_targets(self, targets: tuple[RouteTarget, ...]) -> None:
        if not targets:
            raise InvalidArgument("targets: expected at least one target")
        for i, target in enumerate(targets):
            field = f"targets[{i}]"
            validate_name(f"{field}.model", target.model)
            if target.weight < 0:
                raise InvalidArgument(f"{field}.weight: expected >= 0, got {target.weight}")
            if (target.version is None) == (target.alias is None):
                raise InvalidArgument(
                    f"{field}: expected exactly one of version or alias, got "
                    + ("both" if target.version is not None else "neither")
                )
            if target.version is not None:
                validate_version_number(f"{field}.version", target.version)
            if target.alias is not None:
                validate_alias(f"{field}.alias", target.alias)
        if sum(target.weight for target in targets) <= 0:
            raise InvalidArgument(
                "targets[*].weight: expected the weights to sum to more than 0, got 0"
            )
        # Friendly early errors; the store re-checks atomically with the write.
        for i, target in enumerate(targets):
            try:
                if target.version is not None:
                    self.store.get_version(target.model, target.version)
                elif target.alias is not None:
                    self.store.get_alias(target.model, target.alias)
            except NotFound as error:
                ref = "version" if target.version is not None else "alias"
                raise NotFound(f"targets[{i}].{ref}: {error.message}") from None

    def _await_replicas(self, what: str) -> None:
        """Waits until live replicas serve the store's current generation.

        The change is already committed, so a slow or unreachable directory is
        reported in the log, not to the caller: failing the call would suggest
        the change did not happen.
        """
        if self.replicas is None:
            return
        try:
            generation = self.store.current_generation()
            if self.replicas.wait_for_generation(generation, self.route_ack_timeout_s):
                return
            lagging = [s.replica_id for s in self.replicas.live() if s.generation < generation]
        except ModelplaneError as error:
            _log.warning("could not confirm %s on the replicas: %s", what, error.message)
            return
        _log.warning(
            "%s: replicas %s did not report generation %d within %.1f s",
            what,
            ", ".join(lagging) or "(none left)",
            generation,
            self.route_ack_timeout_s,
        )
