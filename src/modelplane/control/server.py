"""The control-plane process: one gRPC server carrying every control service.

Registry, routing, the telemetry query service and the OTLP receivers share one
port, so replicas export telemetry to the same address operators use.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from modelplane.codec.errors import ErrorInterceptor
from modelplane.config import Settings
from modelplane.control.alert_watch import AlertWatcher
from modelplane.control.auth import control_interceptors
from modelplane.control.experiments_servicer import (
    EXPERIMENT_SERVICE_NAMES,
    add_experiment_services,
)
from modelplane.control.registry_wiring import add_registry_services
from modelplane.control.rollout_servicer import add_rollout_service
from modelplane.control.rollouts import RolloutManager
from modelplane.control.scaling import ScalingManager
from modelplane.control.scaling_servicer import SERVICE_NAME as SCALING_SERVICE_NAME
from modelplane.control.scaling_servicer import add_scaling_service
from modelplane.control.telemetry_servicer import TelemetryParts, add_telemetry_services
from modelplane.control.webhooks_servicer import WEBHOOK_SERVICE_NAME, add_webhook_services
from modelplane.domain.errors import InvalidArgument, NotFound
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_connect import connect
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.retention import RetentionPolicy
from modelplane.registry.sandbox import Limits, Sandbox
from modelplane.registry.serving_groups import ServingGroupStore
from modelplane.registry.sources import SourcePolicy
from modelplane.registry.use_cases import Registry
from modelplane.security.tls import server_credentials
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.alerts import AccuracyPolicy
from modelplane.telemetry.drift import DriftTracker
from modelplane.telemetry.feedback import FeedbackJoiner, PredictionStore
from modelplane.telemetry.persistence import AggregatePersistence
from modelplane.telemetry.prometheus import ControlPlaneCollector, MetricsServer
from modelplane.telemetry.quality_persistence import QualityPersistence
from modelplane.v1 import registry_pb2, rollout_pb2, routing_pb2, telemetry_pb2
from modelplane.webhooks.targets import TargetPolicy

log = logging.getLogger(__name__)

_SERVICE_NAMES = (
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    routing_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name,
    telemetry_pb2.DESCRIPTOR.services_by_name["TelemetryService"].full_name,
    rollout_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name,
    *EXPERIMENT_SERVICE_NAMES,
    WEBHOOK_SERVICE_NAME,
    SCALING_SERVICE_NAME,
)


class ControlPlane:
    """Builds the control-plane server from settings; ``start`` binds, ``stop`` drains."""

    def __init__(self, settings: Settings, redis_url: str, max_workers: int = 16) -> None:
        self.settings = settings
        self._redis = connect(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.store = RedisRegistryStore(self._redis, settings.key_prefix)
        self.artifacts = ArtifactStore(settings.resolved_artifact_root)
        self.registry = Registry(
            store=self.store,
            artifacts=self.artifacts,
            replicas=ReplicaDirectory(self._redis, settings.key_prefix),
            max_upload_bytes=settings.max_upload_bytes,
            sandbox=Sandbox(
                Limits(settings.validation_timeout_s, settings.validation_memory_bytes)
            ),
            sources=SourcePolicy.of(settings.source_roots, settings.source_schemes),
            retention=RetentionPolicy(
                settings.retention_keep_last, settings.retention_referenced_days
            ),
        )
        self.aggregator = StatsAggregator()
        self.telemetry_store = AggregatePersistence(
            self._redis, settings.key_prefix, self.aggregator
        )
        predictions = PredictionStore(self._redis, settings.key_prefix, settings.prediction_ttl_s)
        self.feedback = FeedbackJoiner(predictions)
        self.telemetry = TelemetryParts(
            self.aggregator,
            drift=DriftTracker(),
            predictions=predictions,
            feedback=self.feedback,
            accuracy=AccuracyPolicy(settings.alert_accuracy_max_drop, settings.alert_min_feedback),
        )
        # Drift baselines and windows, feedback sums: restored on start like the slots.
        self.quality_store = QualityPersistence(
            self._redis, settings.key_prefix, self.telemetry.drift, self.feedback,
            version_exists=self._version_exists,
        )
        self.rollouts = RolloutManager(
            self.registry,
            self.aggregator,
            self._redis,
            settings.key_prefix,
            accuracy=self.feedback.accuracy,
        )
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="control"),
            # The error interceptor first, so it is outermost and maps auth refusals too.
            interceptors=[ErrorInterceptor(), *control_interceptors(settings)],
            # Past this many running or queued RPCs, RESOURCE_EXHAUSTED instead of a queue
            # that grows without bound.
            maximum_concurrent_rpcs=settings.control_max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                # One control plane per port: a second one must fail to bind, not share it.
                ("grpc.so_reuseport", 0),
            ],
        )
        add_registry_services(self._server, self.registry)
        add_telemetry_services(self._server, self.telemetry)
        add_rollout_service(self._server, self.rollouts)
        # Scaling answers FAILED_PRECONDITION until a data plane is attached.
        self.scaling = ScalingManager(
            ServingGroupStore(self._redis, settings.key_prefix),
            ReplicaDirectory(self._redis, settings.key_prefix),
            self.store,
        )
        add_scaling_service(self._server, self.scaling)
        self.experiments, self.environments = add_experiment_services(
            self._server, self.registry, self._redis, settings.key_prefix
        )
        # Run artifacts share the artifact store: garbage collection must keep them.
        self.registry.artifact_owners.append(self._run_artifacts)
        self.alerts = AlertWatcher(
            self.registry,
            self.aggregator,
            drift=self.telemetry.drift,
            feedback=self.feedback,
            policy=self.telemetry.policy,
            accuracy=self.telemetry.accuracy,
            redis_client=self._redis,
            key_prefix=settings.key_prefix,
        )
        self.webhooks = add_webhook_services(
            self._server, self._redis, settings.key_prefix,
            TargetPolicy(settings.webhook_allowed_hosts, settings.webhook_allow_private),
        )
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (*_SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.port = 0
        self._metrics: MetricsServer | None = None
        self.metrics_port = 0

    def start(self) -> int:
        """Bind and serve; returns the bound port (useful when the setting is 0)."""
        address = f"{self.settings.host}:{self.settings.control_port}"
        if self.settings.tls_cert_file and self.settings.tls_key_file:
            self.port = self._server.add_secure_port(
                address,
                server_credentials(
                    self.settings.tls_cert_file,
                    self.settings.tls_key_file,
                    self.settings.tls_client_ca_file,
                ),
            )
        else:
            self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind the control plane to {self.settings.control_address}")
        # Before serving: what the previous control plane flushed, so a restart
        # loses at most the slots it had not flushed yet.
        restored = self.telemetry_store.restore()
        log.info("telemetry: %d aggregation slots restored from Redis", restored)
        restored = self.quality_store.restore()
        log.info("telemetry: %d drift and feedback values restored from Redis", restored)
        self._server.start()
        self.telemetry_store.start(self.settings.telemetry_flush_interval_s)
        self.quality_store.start(self.settings.telemetry_flush_interval_s)
        if self.settings.metrics_port is not None:
            collector = ControlPlaneCollector(
                self.aggregator, self.settings.prometheus_max_series, self.telemetry.drift
            )
            self._metrics = MetricsServer(
                [collector], self.settings.host, self.settings.metrics_port
            )
            self.metrics_port = self._metrics.port
            log.info("control plane /metrics on %s:%s", self.settings.host, self.metrics_port)
        # Rollouts stored as running resume here, their step clocks intact.
        self.rollouts.start_loop(self.settings.rollout_tick_s)
        if self.settings.alert_watch_interval_s > 0:
            self.alerts.start(self.settings.alert_watch_interval_s)
        self.webhooks.start()
        # Off the start path: validations take seconds, serving must not wait for them.
        threading.Thread(
            target=self._revalidate_pending, name="revalidate-pending", daemon=True
        ).start()
        for name in ("", *_SERVICE_NAMES):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("control plane listening on %s:%s", self.settings.host, self.port)
        return self.port

    def _run_artifacts(self) -> set[str]:
        return {
            artifact.sha256
            for run in self.experiments.store.runs()
            for artifact in run.artifacts
        }

    def _revalidate_pending(self) -> None:
        try:
            concluded = self.registry.revalidate_pending()
        except Exception:
            log.exception("re-validating versions left PENDING failed")
            return
        for version in concluded:
            log.info(
                "version %d of model '%s' left PENDING, now %s",
                version.version, version.model, version.status.value,
            )

    def _version_exists(self, model: str, version: int) -> bool:
        """Whether the registry still has ``model:version`` (drift baselines live as long)."""
        try:
            self.store.get_version(model, version)
        except (NotFound, InvalidArgument):
            return False
        return True

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def stop(self, grace_s: float | None = None) -> None:
        """Health NOT_SERVING, refuse new calls, let in-flight ones finish for
        ``grace_s`` (default ``settings.shutdown_grace_s``), then close."""
        if grace_s is None:
            grace_s = self.settings.shutdown_grace_s
        self._health.enter_graceful_shutdown()
        self.rollouts.stop_loop()
        self.alerts.stop()
        self.webhooks.stop()
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None
        self._server.stop(grace_s).wait()
        self.telemetry_store.stop()
        self.quality_store.stop()
        self._redis.close()
