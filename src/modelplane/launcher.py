"""Starts and stops a whole modelplane locally: Redis, Ray, control plane, data plane.

Used by ``modelplane up``, the end-to-end tests and the benchmarks. Everything it
starts it stops, in reverse order: the data plane, Ray (only when it started a
local Ray; an existing cluster is left running), the control plane, and the
embedded redis-server by PID.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from types import TracebackType
from typing import Any

from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.domain.errors import Unavailable
from modelplane.registry.embedded_redis import EmbeddedRedis, free_port
from modelplane.serving.app import app_name_for, deploy_data_plane, shutdown_data_plane
from modelplane.serving.scaler import RayServeDeployer, shutdown_groups

log = logging.getLogger(__name__)

# ray.init waits a fixed 30 s (Ray 2.60 has no setting for it) for the new raylet
# to register with the GCS, and a loaded 2-core machine sometimes misses that;
# "modelplane up" then exited 1. One more attempt, after stopping what the first
# started, gives the machine another 30 s.
RAY_START_ATTEMPTS = 2

# Ray's own background work on a local head, paced for a small machine (each can
# be overridden from the environment). Requests never pass through Serve here, so
# its controller reconciling every 0.5 s instead of 0.1 s only delays reactions to
# replica deaths and scaling by < 0.5 s; and idle pooled workers, which poll, are
# not kept (actors get their own worker anyway). Measured on 2 cores with an idle
# `modelplane up`: Ray's processes took 17.8 % of a core before, 8.3 % after.
#
# Ray starts its worker processes, Serve replicas included, at nice 15 so that
# batch tasks yield the CPU to Ray's daemons. A serving replica must not: at nice
# 15 it yields to every process on the node, its load's clients included, and its
# requests wait in the run queue. Measured on 2 cores at 600 req/s, the same
# replica at nice 15 and at nice 0, alternating: p99 11.2-12.4 ms against 8.9-10.0,
# closed-loop throughput 1,328-1,414 against 1,435-1,540 req/s.
RAY_LOCAL_ENV = {
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    "RAY_num_workers_soft_limit": "0",
    "RAY_worker_niceness": "0",
}


class LocalRayUnavailable(Unavailable, OSError):
    """The local Ray head did not start. An ``OSError`` too: the CLI reports those
    as one line instead of a traceback."""


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
            # Ray's processes inherit the environment of this one, where ray.init
            # starts them.
            for name, value in RAY_LOCAL_ENV.items():
                os.environ.setdefault(name, value)
            loopback = self.settings.host in ("127.0.0.1", "localhost")
            node: dict[str, Any] = {"_node_ip_address": "127.0.0.1"} if loopback else {}
            _start_local_ray(
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


def _start_local_ray(**options: Any) -> None:
    """``ray.init`` of a local head, tried ``RAY_START_ATTEMPTS`` times; raises
    ``LocalRayUnavailable`` naming the last error if every attempt failed."""
    import ray

    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        before = _ray_children()
        try:
            ray.init(**options)
            return
        except Exception as error:
            # ray.init leaves what it started running when it gives up (the GCS,
            # a raylet, its monitors): stop exactly those before trying again.
            started = sorted(_ray_children() - before)
            log.warning(
                "starting the local Ray head failed (attempt %d of %d): %s; "
                "stopping the %d process(es) it started: %s",
                attempt, RAY_START_ATTEMPTS, error, len(started), started,
            )
            try:
                ray.shutdown()
            except Exception:
                log.exception("ray.shutdown after a failed start")
            _stop_pids(started)
            if attempt == RAY_START_ATTEMPTS:
                raise LocalRayUnavailable(
                    f"ray: the local Ray head did not start in {RAY_START_ATTEMPTS} attempts "
                    f"(last: {error}); the machine may be overloaded: try again, or start "
                    "Ray yourself (ray start --head) and pass --ray-address"
                ) from error


def _ray_children() -> set[int]:
    """PIDs of this process's descendants that run Ray (GCS, raylet, monitors, workers)."""
    import psutil

    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            # Binaries and scripts under .../ray/, workers renamed "ray::...".
            command = " ".join(child.cmdline())
            if "/ray/" in command or command.startswith("ray::"):
                pids.add(child.pid)
        except psutil.Error:  # exited meanwhile, or not ours to read
            continue
    return pids


def _stop_pids(pids: list[int], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL whatever is still running after ``timeout_s``."""
    import psutil

    processes = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.send_signal(signal.SIGTERM)
            processes.append(process)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=timeout_s)
