"""Registry and routing use cases: what the gRPC servicers and the CLI both call.

Validation of requests lives here, once, so every entry point rejects the same
things with the same messages; the store only enforces what must be atomic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterable

from modelplane.domain.errors import (
    Aborted,
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    ModelplaneError,
    NotFound,
)
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
    ShadowTarget,
    VersionKey,
    VersionStatus,
)
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.filters import parse_filter
from modelplane.registry.lineage import validate_lineage
from modelplane.registry.names import validate_alias, validate_name, validate_version_number
from modelplane.registry.records import signature_from_json
from modelplane.registry.reference import DEFAULT_ATOL, DEFAULT_RTOL, load_reference
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.retention import GcPlan, RetentionPolicy, referenced_versions
from modelplane.registry.retention import plan as retention_plan
from modelplane.registry.route_plan import plan_route, unservable
from modelplane.registry.route_prepare import RoutePreparation
from modelplane.registry.sandbox import Sandbox
from modelplane.registry.sources import SourcePolicy, read_source, resolve_source
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
        sandbox: Sandbox | None = None,
        route_prepare_timeout_s: float | None = None,
        sources: SourcePolicy | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.replicas = replicas
        self.sandbox = sandbox or Sandbox()
        self.sources = sources or SourcePolicy()
        self._clock = clock
        self.max_upload_bytes = max_upload_bytes
        self.route_ack_timeout_s = route_ack_timeout_s
        self.route_prepare_timeout_s = route_prepare_timeout_s
        """How long a route change waits for loads; None: ``route_ack_timeout_s``."""
        self.retention = retention or RetentionPolicy()
        # Other owners of files in the artifact store (experiment runs): each
        # callable names the sha256s garbage collection must never delete.
        self.artifact_owners: list[Callable[[], Iterable[str]]] = []

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
        *,
        lineage: Lineage | None = None,
        idempotency_key: str = "",
        reference_npz: bytes = b"",
        reference_rtol: float | None = None,
        reference_atol: float | None = None,
        source_uri: str = "",
    ) -> ModelVersion:
        """Stores the file, records it PENDING, validates it in a sandbox, returns the outcome.

        Synchronous: the answer is the version READY, or FAILED with the reason
        (onnxruntime cannot load it, the sandbox crashed, timed out or ran out of
        memory, the reference outputs do not match). A file that is not a sound
        ONNX model at all (unparseable, checker errors, absurd dimensions,
        external data) is refused with INVALID_ARGUMENT before a number is used,
        and nothing is kept: no file, no model, no version.
        """
        validate_name("model", model)
        lineage = validate_lineage(lineage or Lineage())
        if idempotency_key:
            validate_name("idempotency_key", idempotency_key)
            with contextlib.suppress(NotFound):
                existing = self.store.find_idempotent(model, idempotency_key)
                if existing is not None:
                    return existing
        if not create_model:
            self.store.get_model(model)
        if lineage.parent_version:
            self._parent_exists(model, lineage.parent_version)
        rtol = DEFAULT_RTOL if reference_rtol is None else reference_rtol
        atol = DEFAULT_ATOL if reference_atol is None else reference_atol
        if reference_npz:
            load_reference(reference_npz, rtol, atol)
        if source_uri:
            path = resolve_source(source_uri, self.sources)
            if any(chunks):
                raise InvalidArgument(
                    "chunk: a registration from source_uri must not stream a file"
                )
            chunks = read_source(path)
        staged = self.artifacts.write_stream(chunks, self.max_upload_bytes)
        committed = False
        try:
            if staged.size_bytes == 0:
                raise InvalidArgument("chunk: the upload is empty; expected an ONNX file")
            options = {"reference": reference_npz or None, "rtol": rtol, "atol": atol}
            with self.sandbox.slots:
                validation = self.sandbox.start(str(staged.path), options)
                try:
                    admitted = validation.admitted()
                    if create_model:
                        # Only now: a refused upload must not leave an empty model behind.
                        with contextlib.suppress(AlreadyExists):
                            self.store.create_model(model, "", self._now_ms())
                    self.artifacts.commit(staged)
                    committed = True
                    reference_sha = self._store_reference(reference_npz)
                    # An add_version that fails after the commit leaves an unreferenced
                    # file: harmless, since artifacts are addressed by content, and
                    # deleting it could race a concurrent upload of the same bytes.
                    pending = self.store.add_version(
                        model,
                        staged.sha256,
                        staged.size_bytes,
                        signature_from_json({"inputs": [], "outputs": []}),
                        description,
                        self._now_ms(),
                        lineage=lineage,
                        status=VersionStatus.PENDING,
                        opset=int(admitted["opset"]),
                        reference_sha256=reference_sha,
                        reference_rtol=rtol if reference_sha else 0.0,
                        reference_atol=atol if reference_sha else 0.0,
                        idempotency_key=idempotency_key,
                    )
                    if pending.status is not VersionStatus.PENDING:
                        # A concurrent retry under the same idempotency key won.
                        return pending
                    findings, reason = validation.outcome()
                finally:
                    validation.kill()
        finally:
            if not committed:
                self.artifacts.discard(staged)
        return self._conclude(pending, findings, reason)

    def _parent_exists(self, model: str, parent: int) -> None:
        try:
            self.store.get_version(model, parent)
        except NotFound as error:
            raise NotFound(f"lineage.parent_version: {error.message}") from None

    def revalidate_pending(self) -> list[ModelVersion]:
        """Concludes versions left PENDING by a control plane that stopped mid-validation.

        Run when a control plane starts. The stored artifact is validated again in
        the sandbox; a version another control plane concludes meanwhile is skipped.
        """
        concluded = []
        for model in self.store.list_models():
            for version in self.store.list_versions(model.name):
                if version.status is not VersionStatus.PENDING:
                    continue
                findings, reason = self._validate_stored(version)
                try:
                    concluded.append(self._conclude(version, findings, reason))
                except FailedPrecondition:
                    continue
        return concluded

    def _validate_stored(self, version: ModelVersion) -> tuple[dict[str, object] | None, str]:
        try:
            path = self.artifacts.verified_path(version.sha256)
            reference = (
                self.artifacts.read_verified(version.reference_sha256)
                if version.reference_sha256
                else None
            )
        except ModelplaneError as error:
            return None, f"artifact unavailable: {error.message}"
        options = {
            "reference": reference,
            "rtol": version.reference_rtol,
            "atol": version.reference_atol,
        }
        with self.sandbox.slots:
            validation = self.sandbox.start(str(path), options)
            try:
                validation.admitted()
                return validation.outcome()
            except ModelplaneError as error:
                return None, error.message
            finally:
                validation.kill()

    def _store_reference(self, data: bytes) -> str:
        if not data:
            return ""
        staged = self.artifacts.write_stream([data], len(data))
        # The .npz lives beside the models, addressed by its own hash.
        return self.artifacts.commit(staged).stem

    def _conclude(
        self, pending: ModelVersion, findings: dict[str, object] | None, reason: str
    ) -> ModelVersion:
        def change(current: ModelVersion) -> ModelVersion:
            if current.status is not VersionStatus.PENDING:
                raise FailedPrecondition(
                    f"version {current.version} of model '{current.model}' is "
                    f"{current.status.value}; validation no longer applies"
                )
            if findings is None:
                return dataclasses.replace(
                    current, status=VersionStatus.FAILED, status_reason=reason
                )
            signature = signature_from_json(findings["signature"])  # type: ignore[arg-type]
            return dataclasses.replace(current, status=VersionStatus.READY, signature=signature)

        concluded = self.store.update_version(
            pending.model, pending.version, change, "validate_version"
        )
        if concluded.status is VersionStatus.READY:
            # A caller may predict with this version the moment RegisterVersion
            # returns; replicas must know it is READY by then.
            self._await_replicas(f"version {concluded.version} of model '{concluded.model}'")
        return concluded

    def get_version(self, model: str, version: int) -> ModelVersion:
        validate_version_number("version", version)
        return self.store.get_version(model, version)

    def list_versions(self, model: str, where: str = "") -> list[ModelVersion]:
        """All versions, or those matching ``where`` (see filters.py)."""
        matcher = parse_filter(where)
        versions = self.store.list_versions(model)
        if matcher is None:
            return versions
        return matcher.select(versions)

    def archive_version(self, model: str, version: int) -> ModelVersion:
        """READY or FAILED -> ARCHIVED (retired, final); refused while a route still serves it.

        Lineage, record and audit stay; the version is never aliased, routed to or
        loaded again, and garbage collection may later delete its artifact.
        """
        validate_version_number("version", version)

        def change(current: ModelVersion) -> ModelVersion:
            if current.status is VersionStatus.ARCHIVED:
                return current
            if current.status is VersionStatus.PENDING:
                raise FailedPrecondition(
                    f"version {version} of model '{model}' is PENDING; wait for validation"
                )
            return dataclasses.replace(current, status=VersionStatus.ARCHIVED)

        if self.replicas is not None:
            # Retired means unloaded everywhere: no pending load request may keep it
            # warm. Withdrawn before the write, whose generation makes replicas swap
            # and drop what neither the routes nor the previous table need. (A route
            # still naming it refuses the archive below and keeps it loaded anyway.)
            preparation = RoutePreparation(self.replicas.client, self.replicas.prefix)
            try:
                preparation.forget([VersionKey(model, version)])
            except ModelplaneError as error:
                _log.warning("could not withdraw load requests for %s:%d: %s", model,
                             version, error.message)
        archived = self.store.update_version(
            model, version, change, "archive_version", refuse_if_routed=True
        )
        self._await_replicas(f"retirement of version {version} of model '{model}'")
        return archived

    def delete_version(self, model: str, version: int) -> None:
        validate_version_number("version", version)
        self.store.delete_version(model, version)

    def verify_version(self, model: str, version: int) -> ModelVersion:
        """Re-hashes the artifact; a mismatch marks the version FAILED (audited), then DATA_LOSS."""
        current = self.get_version(model, version)
        if current.artifact_purged_at_ms:
            # Deleted on purpose, by policy: not corruption, and the record stays ARCHIVED.
            raise FailedPrecondition(f"{unservable(current)}; there is no artifact to verify")
        try:
            self.artifacts.read_verified(current.sha256)
            if current.reference_sha256:
                self.artifacts.read_verified(current.reference_sha256)
        except (DataLoss, NotFound) as error:
            reason = f"integrity check failed: {error.message}"
            self.store.update_version(
                model,
                version,
                lambda v: dataclasses.replace(v, status=VersionStatus.FAILED, status_reason=reason),
                "integrity_failure",
            )
            raise DataLoss(f"version {version} of model '{model}': {reason}") from None
        return current

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

    def alias_history(self, model: str, alias: str) -> list[AliasChange]:
        self.store.get_model(model)
        return self.store.alias_history(model, alias)

    # ------------------------------------------------------------------- audit

    def query_audit(
        self,
        model: str = "",
        endpoint: str = "",
        actor: str = "",
        action: str = "",
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
    ) -> list[AuditEvent]:
        """Events oldest first matching every given criterion, at most ``limit``."""
        if limit < 0:
            raise InvalidArgument(f"limit: expected >= 0, got {limit}")
        limit = min(limit or 1000, 100_000)
        events = []
        for event in self.store.audit_events(since_ms, until_ms):
            if model and event.model != model:
                continue
            if endpoint and event.endpoint != endpoint:
                continue
            if actor and event.actor != actor:
                continue
            if action and event.action != action:
                continue
            events.append(event)
            if len(events) >= limit:
                break
        return events

    def served_at(self, endpoint: str, at_ms: int) -> ServedAt:
        return self.store.served_at(endpoint, at_ms)

    # ------------------------------------------------------------------ routes

    def set_route(
        self,
        endpoint: str,
        targets: Iterable[RouteTarget],
        expected_revision: int,
        *,
        shadows: Iterable[ShadowTarget] = (),
        fallback: RouteTarget | None = None,
        sticky_input: str = "",
    ) -> Route:
        """Make-before-break: replicas load the route's versions, then it flips, then it is live.

        Every live replica is asked to load the versions the new route needs and
        acknowledges in its heartbeat (route_prepare.py) before the compare-and-set
        writes the route. A replica that has not acknowledged within the timeout
        is logged and the route flips anyway: such a replica keeps serving the
        endpoint's previous route until it can load the new versions (replica.py),
        so no request meets an unloaded version. After the flip the call waits
        for the replicas to serve the new generation.
        """
        validate_name("endpoint", endpoint)
        checked = tuple(targets)
        self._validate_targets(checked)
        if expected_revision < 0:
            raise InvalidArgument(
                f"expected_revision: expected 0 (new endpoint) or the current revision, "
                f"got {expected_revision}"
            )
        plan = plan_route(self.store, checked, tuple(shadows), fallback, sticky_input)
        self._prepare(endpoint, plan.versions)
        route = self.store.set_route(
            endpoint,
            checked,
            expected_revision,
            self._now_ms(),
            shadows=plan.shadows,
            fallback=fallback,
            sticky_input=sticky_input,
        )
        self._await_replicas(f"endpoint '{endpoint}' revision {route.revision}")
        return route

    def reweight_route(
        self, endpoint: str, targets: Iterable[RouteTarget], expected_revision: int
    ) -> Route:
        """Sets an endpoint's weighted targets and keeps its shadows, fallback and sticky input.

        For automation (rollouts, promotions) that moves traffic without owning
        the rest of the route; the compare-and-set on ``expected_revision`` makes
        reading the current policy and writing the new route one consistent step.
        """
        try:
            current: Route | None = self.store.get_route(endpoint)
        except NotFound:
            current = None
        if current is None or current.revision != expected_revision:
            return self.set_route(endpoint, targets, expected_revision)
        return self.set_route(
            endpoint,
            targets,
            expected_revision,
            shadows=current.shadows,
            fallback=current.fallback,
            sticky_input=current.sticky_input,
        )

    def rollback_route(self, endpoint: str, expected_revision: int = 0) -> Route:
        """Restores the revision before the current one as a new revision (one CAS)."""
        current = self.store.get_route(endpoint)
        if expected_revision and expected_revision != current.revision:
            raise Aborted(
                f"endpoint '{endpoint}': expected revision {expected_revision}, "
                f"current revision is {current.revision}; re-read the route and retry"
            )
        history = [
            entry for entry in self.store.route_history(endpoint)
            if entry.revision and entry.route is not None
        ]
        earlier = [entry for entry in history if entry.revision < current.revision]
        if not earlier or earlier[-1].route is None:
            raise FailedPrecondition(
                f"endpoint '{endpoint}' has no revision before {current.revision} to roll back to"
            )
        previous = earlier[-1].route
        return self.set_route(
            endpoint,
            previous.targets,
            current.revision,
            shadows=previous.shadows,
            fallback=previous.fallback,
            sticky_input=previous.sticky_input,
        )

    def route_history(self, endpoint: str) -> list[RouteRevision]:
        return self.store.route_history(endpoint)

    def shadow_books(self) -> list[str]:
        """The shadow-comparison books (JSON) the live replicas published."""
        if self.replicas is None:
            return []
        preparation = RoutePreparation(self.replicas.client, self.replicas.prefix)
        return preparation.books(status.replica_id for status in self.replicas.live())

    def _prepare(self, endpoint: str, versions: frozenset[VersionKey]) -> None:
        if self.replicas is None or not versions:
            return
        preparation = RoutePreparation(self.replicas.client, self.replicas.prefix)
        timeout = self.route_prepare_timeout_s
        if timeout is None:
            timeout = self.route_ack_timeout_s
        try:
            preparation.request(versions)
            lagging = preparation.wait_loaded(self.replicas, versions, timeout)
        except ModelplaneError as error:
            # The write below needs Redis too and will say so if it is down.
            _log.warning("endpoint '%s': could not prepare the replicas: %s", endpoint,
                         error.message)
            return
        if lagging:
            _log.warning(
                "endpoint '%s': replicas %s did not load %s within %.1f s; they keep the "
                "previous route until they can",
                endpoint,
                ", ".join(status.replica_id for status in lagging),
                ", ".join(sorted(str(key) for key in versions)),
                timeout,
            )

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

    def retire_endpoint(self, endpoint: str, expected_revision: int = 0) -> int:
        """Takes the endpoint out of serving for good; the revision that was in force.

        The route goes (audited ``retire_endpoint``, history kept), then the call
        waits until replicas serve that generation: when it returns, requests
        naming the endpoint get NOT_FOUND.
        """
        validate_name("endpoint", endpoint)
        if expected_revision < 0:
            raise InvalidArgument(
                f"expected_revision: expected 0 (any) or the current revision, "
                f"got {expected_revision}"
            )
        revision = self.store.retire_route(endpoint, expected_revision)
        self._await_replicas(f"retirement of endpoint '{endpoint}'")
        return revision

    # ------------------------------------------------------------- lifecycle

    def record_event(
        self,
        action: str,
        subject: str,
        *,
        model: str = "",
        endpoint: str = "",
        detail: dict[str, object] | None = None,
    ) -> str:
        """Audits something that changes nothing served (a rollout step, an alert)."""
        validate_name("action", action)
        if model:
            validate_name("model", model)
        if endpoint:
            validate_name("endpoint", endpoint)
        text = json.dumps(detail or {}, separators=(",", ":"), sort_keys=True)
        return self.store.record_event(
            action, subject, model=model, endpoint=endpoint, detail=text, after=text
        )

    def plan_gc(self) -> GcPlan:
        """What ``gc_artifacts`` would delete now, and why the rest stays."""
        versions = {m.name: self.store.list_versions(m.name) for m in self.store.list_models()}
        days = self.retention.referenced_days
        referenced = (
            referenced_versions(self.store.audit_events(self._now_ms() - days * 86_400_000))
            if days
            else set()
        )
        owned: set[str] = set()
        for owner in self.artifact_owners:
            owned.update(owner())
        return retention_plan(versions, referenced, self.retention, owned)

    def gc_artifacts(self, dry_run: bool = False) -> GcPlan:
        """Deletes the artifacts of archived versions the retention policy does not keep.

        Per version, the record is marked purged first (one audited compare-and-set,
        ``artifact_deleted``, which refuses a version no longer ARCHIVED), then its
        file is deleted unless a version registered meanwhile uses the same bytes.
        A crash in between leaves a record saying purged and a file nobody loads:
        the next run does not count it, nothing is lost that was still wanted.
        """
        planned = self.plan_gc()
        if dry_run:
            return planned
        now = self._now_ms()
        done = []
        for decision in planned.purge:
            target = decision.version

            def change(current: ModelVersion, sha256: str = target.sha256) -> ModelVersion:
                if current.status is not VersionStatus.ARCHIVED or current.sha256 != sha256:
                    raise FailedPrecondition(
                        f"version {current.version} of model '{current.model}' changed "
                        "during garbage collection; run it again"
                    )
                return dataclasses.replace(current, artifact_purged_at_ms=now)

            try:
                self.store.update_version(
                    target.model, target.version, change, "artifact_deleted"
                )
            except (FailedPrecondition, NotFound) as error:
                _log.warning("gc: kept the artifact of %s:%d: %s", target.model,
                             target.version, error.message)
                continue
            done.append(decision)
        still_needed = self._needed_files()
        files = {}
        for sha256, size in planned.files.items():
            if sha256 in still_needed:
                continue
            path = self.artifacts.path_for(sha256)
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                path.unlink()
                files[sha256] = size
        return GcPlan(purge=tuple(done), keep=planned.keep, files=files)

    def _needed_files(self) -> set[str]:
        """Files any version not purged, or another owner, still uses: re-read just before
        deleting, so a registration of the same bytes since the plan keeps its file."""
        needed: set[str] = set()
        for model in self.store.list_models():
            for version in self.store.list_versions(model.name):
                if not version.artifact_purged_at_ms:
                    needed.update((version.sha256, version.reference_sha256))
        for owner in self.artifact_owners:
            needed.update(owner())
        return needed

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
                # An unknown target makes the request itself wrong: INVALID_ARGUMENT.
                ref = "version" if target.version is not None else "alias"
                raise InvalidArgument(f"targets[{i}].{ref}: {error.message}") from None

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
