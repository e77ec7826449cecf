"""The data plane as a Ray Serve application.

Serve places the replicas, restarts unhealthy ones and scales them; requests
never go through Serve's proxies (disabled here), because each replica answers
on its own grpc.aio server, all replicas of a node sharing one port through
SO_REUSEPORT. Serve's proxy costs several times the latency of this path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from ray import serve

from modelplane.config import Settings
from modelplane.domain.errors import FailedPrecondition
from modelplane.serving.replica import ReplicaRuntime

_log = logging.getLogger(__name__)

APP_NAME = "modelplane-data-plane"
SERVICE_NAME = "modelplane-data-plane"

# Environment of the replica processes. onnxruntime's own pools are told not
# to spin by the session options; builds that use OpenMP read these instead.
# Serve flushes its cached request metrics every 100 ms by default; requests
# never pass through Serve here, so those metrics stay empty and the flush
# only wakes the replica's Ray event loop (py-spy --gil: Serve's loop thread holds
# ~4 % of the GIL under load). Every 10 s instead: idle replica CPU 1.8 % -> 1.4 %
# of a core, side by side (python -m loadtests.serve_knobs); under load the
# difference was below the shared test machine's noise. The other Serve timers
# (event-loop monitor, autoscaling push) showed no idle difference: defaults kept.
#
# User code on Serve's own event loop (not a loop thread of its own): the replica's
# gRPC server then runs on the loop where Serve created its internal grpc.aio
# server, the loop grpc.aio delivers completions to; on any other loop each
# event would cross threads (see serving/grpc_server.py).
REPLICA_ENV = {
    "OMP_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "10000",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
}


def otlp_endpoint(settings: Settings) -> str | None:
    """Where replicas export telemetry: the configured endpoint, else the control plane."""
    if settings.otlp_endpoint:
        return settings.otlp_endpoint
    if settings.control_port:
        return settings.control_address
    return None


def _node_name() -> str:
    """Host name plus Ray node id: several Ray nodes may share one host."""
    import socket

    import ray

    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"


def _warn_if_deprioritized(replica_id: str) -> None:
    """Ray starts workers at nice 15 unless ``RAY_worker_niceness`` says otherwise
    (``modelplane up`` and the Helm chart set 0). A replica at 15 yields the CPU to
    every other process on its node, which shows in the latency tail first."""
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    if niceness > 0:
        _log.warning(
            "replica %s runs at nice %d: every other process on this node takes the CPU "
            "before its requests; start Ray nodes with RAY_worker_niceness=0",
            replica_id,
            niceness,
        )


@serve.deployment(name="DataPlane")
class DataPlane:
    """One replica: a ``ReplicaRuntime`` that is serving when the constructor returns."""

    def __init__(self, settings_json: str) -> None:
        settings = Settings.model_validate_json(settings_json)
        if settings.bind_node_ip:
            # Listen on (and advertise) this Ray node's address, so the replica
            # directory tells clients where each node's replicas answer.
            import ray

            node_ip = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            settings = settings.model_copy(update={"host": node_ip})
        replica_id = serve.get_replica_context().replica_tag
        # The serving loop shares the GIL with the telemetry export threads; one
        # encoding a batch of spans keeps it for a whole switch interval at a time,
        # which shows in the latency tail. A shorter interval returns it sooner.
        sys.setswitchinterval(settings.replica_gil_switch_interval_ms / 1000)
        self._telemetry: Any = None
        self._metrics_server: Any = None
        endpoint = otlp_endpoint(settings)
        if endpoint is not None and settings.telemetry_enabled:
            # Imported here: the OTel SDK is only needed where a replica runs.
            from modelplane.telemetry.data_plane import DataPlaneTelemetry

            endpoints = [endpoint]
            if settings.otlp_collector_endpoint:
                endpoints.append(settings.otlp_collector_endpoint)
            prometheus = None
            if settings.replica_metrics_port is not None:
                from modelplane.telemetry.prometheus import MetricsServer, ReplicaMetrics

                prometheus = ReplicaMetrics(settings.prometheus_max_series)
                self._metrics_server = MetricsServer(
                    [prometheus], settings.host, settings.replica_metrics_port
                )
                _log.info("replica %s: /metrics on port %d", replica_id, self._metrics_server.port)
            self._telemetry = DataPlaneTelemetry(
                endpoints,
                SERVICE_NAME,
                replica_id,
                metric_export_interval_ms=settings.metric_export_interval_ms,
                trace_sample_ratio=settings.trace_sample_ratio,
                slow_request_threshold_ms=settings.slow_request_threshold_ms,
                prometheus=prometheus,
                record_predictions=settings.prediction_records,
                drift_rows_per_interval=settings.drift_rows_per_interval,
            )
        try:
            # Serve runs this constructor on its event loop (REPLICA_ENV); the
            # server starts on that loop as soon as the constructor returns.
            self._runtime = ReplicaRuntime(
                settings, replica_id, telemetry=self._telemetry, node=_node_name(),
                serve_on_running_loop=True,
            )
        except BaseException:
            if self._telemetry is not None:
                self._telemetry.shutdown()
            raise
        # Which event loop serves (Ray's async actors run on uvloop when it is
        # installed): it shows in the throughput, so the log says.
        loop = type(asyncio.get_running_loop())
        _log.info(
            "replica %s serving on %s (event loop %s.%s)",
            replica_id,
            self._runtime.address,
            loop.__module__,
            loop.__qualname__,
        )
        _warn_if_deprioritized(replica_id)

    def check_health(self) -> None:
        """Serve's health probe: raises when the gRPC server thread is gone."""
        self._runtime.check_health()

    def address(self) -> str:
        return self._runtime.address

    def __del__(self) -> Any:
        # Serve calls this on a graceful replica stop, on its loop, and awaits what
        # it returns: drain (the server is on this loop, so asynchronously), leave
        # the directory, flush the last telemetry. Called again by the garbage
        # collector later, it finds everything closed.
        runtime = getattr(self, "_runtime", None)
        if runtime is not None and not runtime.closed:
            return self._close_async(runtime)
        self._close_rest()
        return None

    async def _close_async(self, runtime: ReplicaRuntime) -> None:
        await runtime.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self._close_rest)

    def _close_rest(self) -> None:
        telemetry = getattr(self, "_telemetry", None)
        if telemetry is not None:
            telemetry.shutdown()
        metrics_server = getattr(self, "_metrics_server", None)
        if metrics_server is not None:
            metrics_server.stop()


def bind_data_plane(settings: Settings, scaling: dict[str, Any] | None = None) -> Any:
    """The data plane as a Serve application, ready for ``serve.run``.

    ``scaling`` replaces ``num_replicas`` (e.g. ``{"autoscaling_config": {...}}``).
    """
    # The decorator turned the class into a Serve Deployment; mypy still sees the class.
    deployment: Any = DataPlane
    options: dict[str, Any] = {
        "ray_actor_options": {
            "num_cpus": settings.replica_num_cpus,
            "runtime_env": {"env_vars": dict(REPLICA_ENV)},
        },
    }
    options.update(scaling if scaling is not None else {"num_replicas": settings.replicas})
    configured = deployment.options(**options)
    # A stable code version: Serve then applies a change of replica count or
    # autoscaling in place instead of replacing every replica (serve.run gives
    # each deploy a random version otherwise). Any other setting changes it.
    configured._version = deployment_version(settings)
    return configured.bind(settings.model_dump_json())


def deployment_version(settings: Settings) -> str:
    """Hash of everything but the replica count: equal versions scale in place."""
    import hashlib

    text = settings.model_dump_json(exclude={"replicas"})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def app_name_for(group: str) -> str:
    """Serve application of a serving group; the default group keeps the historic name."""
    return APP_NAME if group == "default" else f"{APP_NAME}-{group}"


def app(args: dict[str, Any]) -> Any:
    """Serve application builder for config files and KubeRay's RayService.

    ``import_path: modelplane.serving.app:app``; settings come from the replicas'
    ``MODELPLANE_*`` environment, overridden by the config's ``args``.
    """
    return bind_data_plane(Settings(**args))


def deploy_data_plane(
    settings: Settings, app_name: str = APP_NAME, scaling: dict[str, Any] | None = None
) -> None:
    """Deploys (or updates) the data plane; returns once every replica is serving.

    ``serve.run`` waits for the replicas to be healthy, and a replica's
    constructor returns only after its first sync and with its port bound.
    """
    if not settings.redis_url:
        raise FailedPrecondition("redis_url: the data plane needs the registry's Redis URL")
    if settings.inference_port == 0:
        raise FailedPrecondition(
            "inference_port: replicas share one port through SO_REUSEPORT, pick it before deploying"
        )
    serve.start(proxy_location="Disabled")
    serve.run(
        bind_data_plane(settings, scaling), name=app_name, route_prefix=None, blocking=False
    )
    _log.info(
        "data plane: %d replica(s) serving on %s", settings.replicas, settings.inference_address
    )


def shutdown_data_plane(app_name: str = APP_NAME) -> None:
    """Deletes the data plane application and waits until its replicas are gone."""
    serve.delete(app_name, _blocking=True)
