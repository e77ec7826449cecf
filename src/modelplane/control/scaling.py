"""Scaling use cases: map a Scale request onto the Serve deployment of a serving group.

The control plane does not talk to Ray itself: a ``Deployer`` (the Ray Serve one
lives in ``serving/scaler.py``) is attached by whoever runs the data plane. The
order of a change is always: validate, check resources, deploy, then store, so a
refused or failed change leaves both the replicas and the stored group as they were.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from modelplane.domain.errors import FailedPrecondition, InvalidArgument
from modelplane.domain.scaling import (
    DEFAULT_GROUP,
    Autoscaling,
    ServingGroup,
    check_group_name,
    check_replicas,
)
from modelplane.registry.replicas import ReplicaDirectory, ReplicaStatus
from modelplane.registry.serving_groups import ServingGroupStore
from modelplane.registry.store import RegistryStore

_log = logging.getLogger(__name__)


class Deployer(Protocol):
    """What scaling needs from the engine running the replicas."""

    def deploy(self, group: ServingGroup) -> None:
        """Creates or updates the group's replicas; returns once they serve."""

    def running_replicas(self, group: ServingGroup) -> int:
        """Replicas of the group the engine runs now (0 when it has none)."""

    def per_replica(self) -> dict[str, float]:
        """Resources one replica reserves, e.g. ``{"CPU": 0.5}``."""

    def available(self) -> dict[str, float]:
        """Resources the cluster has free now."""

    def application_status(self, group: ServingGroup) -> str:
        """The engine's word for the group's state (RUNNING, DEPLOYING, ...)."""


@dataclass(frozen=True)
class GroupStatus:
    group: ServingGroup
    serve_status: str
    replicas: tuple[ReplicaStatus, ...]
    application: str


@dataclass(frozen=True)
class ClusterStatus:
    generation: int
    groups: tuple[GroupStatus, ...]


def _port_of(address: str) -> int:
    _, _, port = address.rpartition(":")
    return int(port) if port.isdigit() else -1


class ScalingManager:
    def __init__(
        self,
        groups: ServingGroupStore,
        directory: ReplicaDirectory,
        store: RegistryStore,
    ) -> None:
        self._groups = groups
        self._directory = directory
        self._store = store
        self._deployer: Deployer | None = None
        self._app_name: Callable[[str], str] = str
        # One change at a time: two concurrent resource checks could both pass.
        self._lock = threading.Lock()

    def attach(
        self,
        deployer: Deployer,
        default: ServingGroup,
        app_name: Callable[[str], str] | None = None,
    ) -> None:
        """Connects the engine; ``default`` is the default group as deployed at start.

        Groups stored by an earlier run are deployed again, so a restart brings
        back every group at its stored scale.
        """
        self._deployer = deployer
        if app_name is not None:
            self._app_name = app_name
        # What was just deployed is the truth about the default group.
        self._groups.put(replace(default, name=DEFAULT_GROUP, endpoints=()))
        for group in self._groups.list():
            if group.name == DEFAULT_GROUP:
                continue
            try:
                deployer.deploy(group)
            except Exception as error:  # one group must not keep the others down
                _log.error("could not deploy serving group %r: %s", group.name, error)

    def application_of(self, group: str) -> str:
        return self._app_name(group)

    def _require_deployer(self) -> Deployer:
        if self._deployer is None:
            raise FailedPrecondition(
                "scaling: this control plane runs no data plane (start it with `modelplane up`, "
                "or with --ray-address to manage an existing Ray cluster)"
            )
        return self._deployer

    def _group_named(self, name: str) -> ServingGroup:
        check_group_name(name)
        group = self._groups.get(name)
        if group is None:
            known = ", ".join(g.name for g in self._groups.list()) or "none"
            raise InvalidArgument(f"group: unknown serving group {name!r} (known: {known})")
        return group

    def group_for(self, endpoint: str, group: str) -> ServingGroup:
        if bool(endpoint) == bool(group):
            raise InvalidArgument("scale: name exactly one of endpoint and group")
        if group:
            return self._group_named(group)
        self._store.get_route(endpoint)  # NotFound names an unknown endpoint
        return self._group_named(self._groups.group_of(endpoint))

    def scale(
        self,
        endpoint: str,
        group: str,
        replicas: int | None = None,
        autoscaling: Autoscaling | None = None,
    ) -> ServingGroup:
        if (replicas is None) == (autoscaling is None):
            raise InvalidArgument("scale: give either replicas or an autoscaling range")
        if replicas is not None:
            check_replicas(replicas)
        with self._lock:
            deployer = self._require_deployer()
            current = self.group_for(endpoint, group)
            wanted = (
                replace(current, replicas=replicas, autoscaling=None)
                if replicas is not None
                else replace(current, autoscaling=autoscaling)
            )
            self._check_resources(deployer, current, wanted)
            deployer.deploy(wanted)
            self._groups.put(wanted)
        return self._group_named(wanted.name)

    def put_group(self, name: str, inference_port: int, endpoints: list[str]) -> ServingGroup:
        check_group_name(name)
        if not 0 <= inference_port <= 65535:
            raise InvalidArgument(f"inference_port: expected 1..65535, got {inference_port}")
        for endpoint in endpoints:
            self._store.get_route(endpoint)
        with self._lock:
            deployer = self._require_deployer()
            existing = self._groups.get(name)
            if existing is None:
                if inference_port == 0:
                    raise InvalidArgument(f"inference_port: a new group ({name!r}) needs a port")
                taken = {g.inference_port: g.name for g in self._groups.list()}
                if inference_port in taken:
                    raise InvalidArgument(
                        f"inference_port: {inference_port} already serves group "
                        f"{taken[inference_port]!r}"
                    )
                group = ServingGroup(name, inference_port, replicas=1)
                self._check_resources(deployer, None, group)
                deployer.deploy(group)
            else:
                if inference_port not in (0, existing.inference_port):
                    raise InvalidArgument(
                        f"inference_port: group {name!r} serves on {existing.inference_port}; "
                        "a group's port cannot change"
                    )
                group = existing
            self._groups.put(group, tuple(endpoints))
        return self._group_named(name)

    def _check_resources(
        self, deployer: Deployer, current: ServingGroup | None, wanted: ServingGroup
    ) -> None:
        running = deployer.running_replicas(current) if current is not None else 0
        extra = wanted.min_replicas - running
        if extra <= 0:
            return
        available = deployer.available()
        missing = []
        for resource, amount in sorted(deployer.per_replica().items()):
            needed = amount * extra
            have = available.get(resource, 0.0)
            if needed > have + 1e-9:
                missing.append(
                    f"{needed:g} {resource} for {extra} more replica(s) "
                    f"({amount:g} each), {have:g} available"
                )
        if missing:
            raise FailedPrecondition(
                f"scale: group {wanted.name!r} cannot grow from {running} to "
                f"{wanted.min_replicas} replicas: needs " + "; ".join(missing)
                + f". The {running} current replica(s) are untouched"
            )

    def status(self) -> ClusterStatus:
        generation = self._store.current_generation()
        live = self._directory.live()
        groups = []
        for group in self._groups.list():
            replicas = tuple(r for r in live if _port_of(r.address) == group.inference_port)
            serve_status = (
                self._deployer.application_status(group) if self._deployer else "UNKNOWN"
            )
            groups.append(
                GroupStatus(group, serve_status, replicas, self._app_name(group.name))
            )
        return ClusterStatus(generation, tuple(groups))
