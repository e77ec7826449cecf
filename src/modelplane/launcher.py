"""Starts and stops a whole modelplane locally: Redis, Ray, control plane, data plane.

Used by ``modelplane up``, the end-to-end tests and the benchmarks. Everything it
starts it stops, in reverse order: the data plane, Ray (only when it started a
local Ray; an existing cluster is left running), the control plane, and the
embedded redis-server by PID.
"""

from __future__ import annotations

import logging
import os
import time
from types import TracebackType
from typing import Any

from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.registry.embedded_redis import EmbeddedRedis, free_port
from modelplane.serving.app import app_name_for, deploy_data_plane, shutdown_data_plane
from modelplane.serving.scaler import RayServeDeployer, shutdown_groups

log = logging.getLogger(__name__)


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: EmbeddedRedis | None = None
        self.control: ControlPlane | None = None
        self._ray_started = False
        self._data_plane_deployed = False
        self.redis_url = ""
        self.started_in_s = 0.0

    @property
    def control_address(self) -> str:
        assert self.control is not None, "stack not started"
        return self.control.address

    @property
    def inference_address(self) -> str:
        return self.settings.inference_address

    def start(self) -> LocalStack:
        began = time.monotonic()
        try:
            self._start_redis()
            self._start_control_plane()
            self._start_ray()
            self._start_data_plane()
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - began
        return self

    def _start_redis(self) -> None:
        if self.settings.redis_url:
            self.redis_url = self.settings.redis_url
            return
        self.redis = EmbeddedRedis(
            self.settings.data_dir / "redis", appendfsync=self.settings.redis_appendfsync
        ).start()
        self.redis_url = self.redis.url

    def _start_control_plane(self) -> None:
        self.control = ControlPlane(self.settings, self.redis_url)
        port = self.control.start()
        self.settings = self.settings.model_copy(update={"control_port": port})

    def _start_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return  # an embedding process (a test session) owns Ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.settings.ray_address:
            ray.init(address=self.settings.ray_address, log_to_driver=False)
        else:
            # No dashboard, hence no job-submission API (the ShadowRay surface); and
            # a local install keeps Ray's own ports (GCS, raylet, object store) on
            # loopback when the platform itself listens there.
            loopback = self.settings.host in ("127.0.0.1", "localhost")
            node: dict[str, Any] = {"_node_ip_address": "127.0.0.1"} if loopback else {}
            ray.init(
                num_cpus=self.settings.ray_num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                **node,
            )
        self._ray_started = True

    def _start_data_plane(self) -> None:
        assert self.control is not None
        if self.settings.inference_port == 0:
            # Replicas share the port through SO_REUSEPORT, so it is chosen once, here.
            self.settings = self.settings.model_copy(
                update={"inference_port": free_port(self.settings.host)}
            )
        self.settings = self.settings.model_copy(
            update={
                "redis_url": self.redis_url,
                "otlp_endpoint": self.settings.otlp_endpoint or self.control.address,
            }
        )
        deploy_data_plane(self.settings)
        self._data_plane_deployed = True
        # Scale and status act on the data plane this stack runs.
        deployer = RayServeDeployer(self.settings)
        self.control.scaling.attach(deployer, deployer.default_group(), app_name_for)

    def stop(self) -> None:
        steps = (
            ("data plane", self._stop_data_plane),
            ("ray", self._stop_ray),
            ("control plane", self._stop_control_plane),
            ("redis", self._stop_redis),
        )
        for name, step in steps:
            try:
                step()
            except Exception:  # one failing step must not leave the rest running
                log.exception("stopping %s failed", name)

    def _stop_data_plane(self) -> None:
        if self._data_plane_deployed:
            self._data_plane_deployed = False
            shutdown_groups()
            shutdown_data_plane()

    def _stop_ray(self) -> None:
        if self._ray_started:
            import ray

            self._ray_started = False
            ray.shutdown()

    def _stop_control_plane(self) -> None:
        if self.control is not None:
            control, self.control = self.control, None
            control.stop()

    def _stop_redis(self) -> None:
        if self.redis is not None:
            server, self.redis = self.redis, None
            server.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
