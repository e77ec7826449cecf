"""The Open Inference Protocol's model repository, mapped onto modelplane's registry.

modelplane has no directory of model files to load from: every registered READY
version can already be named directly. What "load" adds is what an endpoint
gives: warm sessions on every replica before the first request (make-before-
break), routing, and a stable name. So:

- **load** ``name`` routes the endpoint ``name`` to one version of the model
  ``name`` (weight 100): the latest READY version, or the version given by the
  ``version`` parameter or by a Triton-style ``config`` parameter
  (``{"version_policy": {"specific": {"versions": [N]}}}``). Loading a loaded
  model re-points the endpoint (a reload). It goes through the routing use case,
  so it is validated, atomic, audited (``route.set``) and waits for the replicas
  to serve it like any route change.
- **unload** ``name`` deletes the endpoint ``name`` (audited ``route.delete``):
  its warm sessions are released at the next swap. Requests naming the model
  directly still work; archive a version to stop serving it entirely. Unloading
  a name that has no endpoint is a no-op, as it is in Triton.
- **index** lists every endpoint (version empty) and every registered version.

These are control operations on the data-plane address: they reach Redis
through the registry use cases, off the event loop, and never run on the
predict path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from modelplane.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from modelplane.domain.models import RouteTarget
from modelplane.registry.use_cases import Registry
from modelplane.routing.table import RouteTable

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"

ParameterValue = bool | int | str | bytes


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    # Empty for an endpoint.
    version: str
    state: str
    reason: str


def _version_from_config(config: str) -> int | None:
    try:
        parsed = json.loads(config)
    except ValueError as error:
        raise InvalidArgument(f"parameters['config']: not JSON: {error}") from None
    policy = parsed.get("version_policy") if isinstance(parsed, dict) else None
    if not policy:
        return None
    versions = policy.get("specific", {}).get("versions") if isinstance(policy, dict) else None
    if not isinstance(versions, list) or len(versions) != 1 or not isinstance(versions[0], int):
        raise InvalidArgument(
            "parameters['config'].version_policy: expected "
            '{"specific": {"versions": [N]}} naming exactly one version'
        )
    return versions[0]


def requested_version(parameters: Mapping[str, ParameterValue]) -> int | None:
    """The version a load asks for; None means the latest READY one."""
    if "version" in parameters:
        value = parameters["version"]
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidArgument("parameters['version']: expected a version number")
        text = str(value)
        if not text.isdigit() or int(text) < 1:
            raise InvalidArgument(
                f"parameters['version']: expected a version number >= 1, got {text!r}"
            )
        return int(text)
    config = parameters.get("config")
    if isinstance(config, str | bytes) and config:
        return _version_from_config(config if isinstance(config, str) else config.decode())
    return None


class OipRepository:
    """Load / unload / index on top of the registry use cases (blocking: call off the loop)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def load(self, name: str, parameters: Mapping[str, ParameterValue]) -> int:
        """Routes endpoint ``name`` to a version of model ``name``; returns the version."""
        if not name:
            raise InvalidArgument("model_name: the name of a registered model is required")
        version = requested_version(parameters)
        try:
            self._registry.get_model(name)
        except NotFound:
            raise NotFound(
                f"model '{name}' not found: loading routes an endpoint named after a "
                "registered model"
            ) from None
        if version is None:
            servable = [v.version for v in self._registry.list_versions(name) if v.servable]
            if not servable:
                raise FailedPrecondition(f"model '{name}' has no READY version to load")
            version = max(servable)
        try:
            revision = self._registry.get_route(name).revision
        except NotFound:
            revision = 0
        self._registry.set_route(name, [RouteTarget(name, 100, version=version)], revision)
        return version

    def unload(self, name: str) -> bool:
        """Deletes endpoint ``name``; False when there was none."""
        if not name:
            raise InvalidArgument("model_name: the name of a loaded model is required")
        try:
            self._registry.delete_route(name)
        except NotFound:
            return False
        # Deleting does not wait for the replicas the way routing does; wait
        # here so the caller sees the endpoint gone once the call returns.
        replicas = self._registry.replicas
        if replicas is not None:
            generation = self._registry.store.current_generation()
            replicas.wait_for_generation(generation, self._registry.route_ack_timeout_s)
        return True

    def index(self, table: RouteTable, ready_only: bool) -> list[IndexEntry]:
        entries: list[IndexEntry] = []
        for name, route in sorted(table.endpoints().items()):
            if route.keys:
                targets = ", ".join(str(key) for key in route.keys)
                entries.append(IndexEntry(name, "", READY, f"endpoint routing to {targets}"))
            else:
                entries.append(IndexEntry(name, "", UNAVAILABLE, route.problem or ""))
        for model in self._registry.list_models():
            for version in self._registry.list_versions(model.name):
                if version.servable:
                    entries.append(IndexEntry(model.name, str(version.version), READY, ""))
                else:
                    reason = version.status.value
                    if version.status_reason:
                        reason = f"{reason}: {version.status_reason}"
                    entries.append(
                        IndexEntry(model.name, str(version.version), UNAVAILABLE, reason)
                    )
        if ready_only:
            entries = [entry for entry in entries if entry.state == READY]
        return entries
