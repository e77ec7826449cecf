"""The Ray Serve side of scaling: one Serve application per serving group.

The control plane's ``ScalingManager`` calls this through its ``Deployer``
protocol. Each group runs the same replica code with its own inference port;
a change of replica count or autoscaling range keeps the deployment's code
version, so Serve adds or drains replicas instead of replacing them. New
replicas load every routed version before they open their port; removed ones
drain (``ReplicaRuntime.close`` via the deployment's destructor).
"""

from __future__ import annotations

from typing import Any

import ray
from ray import serve

from modelplane.config import Settings
from modelplane.domain.scaling import ServingGroup
from modelplane.serving.app import app_name_for, deploy_data_plane

_DEPLOYMENT = "DataPlane"


def scaling_options(group: ServingGroup) -> dict[str, Any]:
    """Serve deployment options for the group's replica count or autoscaling range."""
    auto = group.autoscaling
    if auto is None:
        return {"num_replicas": group.replicas}
    return {
        "autoscaling_config": {
            "min_replicas": auto.min_replicas,
            "max_replicas": auto.max_replicas,
            "target_ongoing_requests": auto.target_ongoing_requests,
        }
    }


class RayServeDeployer:
    """Deploys serving groups on the Ray cluster this process is connected to."""

    def __init__(self, settings: Settings) -> None:
        # The data plane's settings as deployed (Redis URL, OTLP endpoint, ports...).
        self._settings = settings

    def group_settings(self, group: ServingGroup) -> Settings:
        return self._settings.model_copy(
            update={"inference_port": group.inference_port, "replicas": max(1, group.replicas)}
        )

    def deploy(self, group: ServingGroup) -> None:
        deploy_data_plane(
            self.group_settings(group), app_name_for(group.name), scaling_options(group)
        )

    def _deployment_status(self, group: ServingGroup) -> Any:
        application = serve.status().applications.get(app_name_for(group.name))
        if application is None:
            return None
        return application.deployments.get(_DEPLOYMENT)

    def running_replicas(self, group: ServingGroup) -> int:
        status = self._deployment_status(group)
        if status is None:
            return 0
        return int(status.replica_states.get("RUNNING", 0))

    def per_replica(self) -> dict[str, float]:
        return {"CPU": self._settings.replica_num_cpus}

    def available(self) -> dict[str, float]:
        free = ray.available_resources()  # type: ignore[no-untyped-call]
        return {key: float(value) for key, value in free.items()}

    def application_status(self, group: ServingGroup) -> str:
        application = serve.status().applications.get(app_name_for(group.name))
        if application is None:
            return "NOT_DEPLOYED"
        # An enum (ApplicationStatus.RUNNING) in some Ray versions, a str in others.
        return str(getattr(application.status, "value", application.status))

    def default_group(self) -> ServingGroup:
        """The default group as the launcher deployed it."""
        return ServingGroup(
            "default", self._settings.inference_port, replicas=self._settings.replicas
        )


def shutdown_groups() -> None:
    """Deletes the Serve applications of every serving group but the default one."""
    prefix = app_name_for("x")[: -len("x")]
    for name in list(serve.status().applications):
        if name.startswith(prefix):
            serve.delete(name, _blocking=True)
