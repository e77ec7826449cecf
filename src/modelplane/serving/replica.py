"""One serving replica, free of any hosting framework.

Owns, and starts in this order: the Redis client (read-only use: snapshots,
pub/sub, heartbeats), the session cache, the routing table with its watcher,
the gRPC server thread and the heartbeat thread. ``close()`` stops them in
reverse. Ray Serve hosts it (serving/app.py); tests run it in-process.

A snapshot is applied make-before-break: every version the new routes need is
loaded first, then the table is swapped in one assignment. An endpoint whose
new versions fail to load keeps its old route, and the replica keeps serving.
Only after the swap does the replica report the snapshot's generation, which
is what the control plane waits for before it calls a change live.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from modelplane.config import Settings
from modelplane.domain.errors import FailedPrecondition
from modelplane.domain.models import ServingSnapshot, VersionKey
from modelplane.oip import grpc_service_pb2_grpc as oip_pb2_grpc
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_connect import connect
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.route_prepare import RoutePreparation
from modelplane.registry.use_cases import Registry
from modelplane.routing.table import RouteTable
from modelplane.routing.watcher import SnapshotWatcher
from modelplane.serving.grpc_server import AioGrpcServer, PreEncodedResponses
from modelplane.serving.inference_servicer import PRE_ENCODED_METHODS as PREDICT_PRE_ENCODED
from modelplane.serving.inference_servicer import SERVICE_NAME as INFERENCE_SERVICE
from modelplane.serving.inference_servicer import InferenceServicer, PredictTelemetry
from modelplane.serving.oip_repository import OipRepository
from modelplane.serving.oip_servicer import LIMITS_CHECKED_METHODS as OIP_LIMITS_CHECKED
from modelplane.serving.oip_servicer import PRE_ENCODED_METHODS as OIP_PRE_ENCODED
from modelplane.serving.oip_servicer import SERVICE_NAME as OIP_SERVICE
from modelplane.serving.oip_servicer import OipServicer
from modelplane.serving.predictor import BatchingDefaults, Predictor
from modelplane.serving.security import data_plane_security
from modelplane.serving.sessions import SessionCache
from modelplane.v1 import inference_pb2_grpc

_log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TTL_S = 5.0


class ReplicaRuntime:
    """Starts serving in the constructor; the port is bound when it returns."""

    def __init__(
        self,
        settings: Settings,
        replica_id: str,
        *,
        telemetry: PredictTelemetry | None = None,
        node: str | None = None,
        reuse_port: bool = True,
        serve_on_running_loop: bool = False,
    ) -> None:
        """``serve_on_running_loop``: the gRPC server runs on the caller's event loop
        (see ``AioGrpcServer``), started by a task once the constructor has
        returned to that loop; heartbeats begin when it listens. Close with
        ``await aclose()`` then."""
        if not settings.redis_url:
            raise FailedPrecondition("redis_url: a serving replica needs the registry's Redis URL")
        self.settings = settings
        self.replica_id = replica_id
        self.node = node or socket.gethostname()
        self._closed = False
        self._serving: asyncio.Task[None] | None = None
        self._apply_lock = threading.Lock()
        # The newest generation whose routes are all in force: what the replica
        # reports. A partial apply (a version failed to load) leaves it behind, so
        # the control plane does not call the change live, and the next sync
        # retries the loads even if the generation did not move.
        self._live_generation = 0
        self._synced = False
        self._previous_needed: set[VersionKey] = set()
        # Versions the control plane asked to have loaded before a route flips.
        self._preloaded: set[VersionKey] = set()

        self._redis = connect(
            settings.redis_url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            # Pings idle connections (the pub/sub one above all) so a dead
            # peer is noticed and the watcher resyncs.
            health_check_interval=5,
            socket_keepalive=True,
        )
        self._store = RedisRegistryStore(self._redis, settings.key_prefix)
        self._directory = ReplicaDirectory(self._redis, settings.key_prefix)
        self.sessions = SessionCache(
            ArtifactStore(settings.resolved_artifact_root),
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads,
            allow_spinning=settings.ort_allow_spinning,
        )
        self.predictor = Predictor(
            self.sessions,
            batching=BatchingDefaults(
                max_batch_size=settings.batch_max_size,
                max_wait_us=settings.batch_max_wait_us,
                inline_threshold_us=settings.inline_run_threshold_us,
            ),
        )
        self._preparation = RoutePreparation(self._redis, settings.key_prefix)
        _log.info(
            "replica %s: onnxruntime intra-op %d, inter-op %d threads, spinning %s; "
            "batching up to %d rows, max wait %d us",
            replica_id,
            settings.ort_intra_op_threads,
            settings.ort_inter_op_threads,
            "on" if settings.ort_allow_spinning else "off",
            settings.batch_max_size,
            settings.batch_max_wait_us,
        )
        self.servicer = InferenceServicer(self.predictor, telemetry=telemetry)
        # The Open Inference Protocol on the same address; its repository calls
        # (load/unload/index) go through the registry use cases, off the predict path.
        self.oip_servicer = OipServicer(
            self.predictor,
            repository=OipRepository(
                Registry(
                    self._store,
                    ArtifactStore(settings.resolved_artifact_root),
                    replicas=self._directory,
                )
            ),
            ready=lambda: self._synced and not self._closed,
            telemetry=telemetry,
            max_tensor_bytes=settings.max_message_bytes,
            max_rows=settings.max_rows_per_request,
            max_elements=settings.max_elements_per_tensor,
        )
        self._watcher = SnapshotWatcher(
            self._store.snapshot, self._redis, self._store.changes_channel, self._apply
        )
        security = data_plane_security(settings, OIP_LIMITS_CHECKED).kwargs()
        # Innermost, so the error, auth and limit wrappers keep its serializer.
        security["wrappers"] = [
            *security["wrappers"],
            PreEncodedResponses((*PREDICT_PRE_ENCODED, *OIP_PRE_ENCODED)),
        ]
        self._server = AioGrpcServer(
            settings.inference_address,
            [self._register],
            [INFERENCE_SERVICE, OIP_SERVICE],
            reuse_port=reuse_port,
            name=f"grpc[{replica_id}]",
            **security,
        )
        self._heartbeat_stop = threading.Event()
        self._heartbeat_now = threading.Event()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name=f"heartbeat[{replica_id}]", daemon=True
        )
        try:
            # The first sync loads what the routes need before the port opens,
            # so the first request already finds a warm session.
            self._watcher.start()
            if serve_on_running_loop:
                self.port = settings.inference_port
                self._serving = asyncio.get_running_loop().create_task(self._serve_hosted())
            else:
                self.port = self._server.start()
                self._heartbeat_thread.start()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ status

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    @property
    def table(self) -> RouteTable:
        return self.predictor.table

    @property
    def live_generation(self) -> int:
        """The newest generation fully in force on this replica (what it reports)."""
        return self._live_generation

    @property
    def closed(self) -> bool:
        return self._closed

    def method_handlers(self) -> dict[str, Any]:
        """The inference handlers wrapped as the server serves them (see AioGrpcServer)."""
        return self._server.method_handlers()

    def is_healthy(self) -> bool:
        """The server thread is up (the watcher may be retrying: stale is still serving)."""
        return not self._closed and self._server.is_alive()

    async def _serve_hosted(self) -> None:
        try:
            self.port = await self._server.start_on_running_loop()
        except Exception:
            _log.exception("replica %s: the gRPC server did not start", self.replica_id)
            raise
        self._heartbeat_thread.start()
        _log.info("replica %s serving on %s", self.replica_id, self.address)

    def check_health(self) -> None:
        if self._closed:
            raise RuntimeError(f"replica {self.replica_id} is closed")
        serving = self._serving
        if serving is not None:
            if not serving.done():
                return  # still starting: the task runs as soon as the loop is free
            if serving.cancelled() or serving.exception() is not None:
                raise RuntimeError(
                    f"replica {self.replica_id}: the gRPC server did not start: "
                    f"{serving.exception() if not serving.cancelled() else 'cancelled'}"
                )
        if not self._server.is_alive():
            raise RuntimeError(f"replica {self.replica_id}: the gRPC server thread is not running")
        if not self._heartbeat_thread.is_alive():
            raise RuntimeError(f"replica {self.replica_id}: the heartbeat thread is not running")

    # ---------------------------------------------------------------- applying

    def _register(self, server: Any) -> None:
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(self.servicer, server)
        oip_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self.oip_servicer, server)

    def _apply(self, snapshot: ServingSnapshot) -> None:
        """The watcher's callback: make-before-break swap. Never raises for a bad load."""
        with self._apply_lock:
            current = self.predictor.table
            preload = self._pending_preloads(snapshot)
            if (
                self._synced
                and snapshot.generation == self._live_generation
                and preload <= self._preloaded
            ):
                return  # a resync that found nothing new
            preload_failures: dict[VersionKey, Exception] = {}
            if not preload <= self._preloaded:
                # Make-before-break, step one: load what a coming route change
                # needs; the heartbeat's "loaded" list is the acknowledgement.
                wanted = sorted(preload - self._preloaded, key=str)
                preload_failures = self.sessions.ensure_loaded(
                    snapshot.versions[key] for key in wanted
                )
            self._preloaded = preload
            new = RouteTable.from_snapshot(snapshot)
            failed_endpoints: set[str] = set()
            failures = self.sessions.ensure_loaded(
                new.version_info(key) for key in sorted(new.versions_needed(), key=str)
            )
            if failures:
                for name, route in new.endpoints().items():
                    if any(key in failures for key in route.keys):
                        old = current.endpoint(name)
                        if old is None or old.keys != route.keys:
                            failed_endpoints.add(name)
                _log.warning(
                    "generation %d: could not load %s; endpoints %s keep their previous route",
                    snapshot.generation,
                    ", ".join(f"{key} ({error})" for key, error in failures.items()),
                    sorted(failed_endpoints),
                )
                new = new.keeping(current, failed_endpoints)
            self._report_load_failures({*preload_failures, *failures})
            self.predictor.prepare_runners(new)
            self.predictor.table = new
            self.predictor.table_changed(new)
            if not failures:
                self._live_generation = snapshot.generation
            self._synced = True
            self._evict(new, current)
            _log.info("serving generation %d", snapshot.generation)
        self._heartbeat_now.set()

    def _evict(self, new: RouteTable, previous: RouteTable) -> None:
        # Kept warm: what the routes need now, what they needed one swap ago (an
        # instant rollback), and versions requested directly while they exist.
        # A retired (or otherwise unservable) version is never kept: no request
        # can be routed to it again.
        needed = new.versions_needed()
        lazy = self.predictor.lazy_loads
        known = {key for key in lazy if _servable(new, key)}
        lazy.intersection_update(known)
        warm = {key for key in self._previous_needed if _servable(new, key)}
        self.sessions.evict_unreferenced(needed | warm | known | self._preloaded)
        self._previous_needed = needed

    def _report_load_failures(self, keys: set[VersionKey]) -> None:
        # Lets a waiting route change stop waiting for this replica at once.
        try:
            self._preparation.publish_failures(self.replica_id, keys, ttl_s=60.0)
        except Exception as error:  # advisory, like the heartbeat
            _log.warning("could not report failed loads: %s", error)

    def _pending_preloads(self, snapshot: ServingSnapshot) -> set[VersionKey]:
        try:
            pending = self._preparation.pending()
        except Exception as error:  # advisory: serving must not depend on it
            _log.warning("could not read the versions to preload: %s", error)
            return set(self._preloaded)
        return {key for key in pending if key in snapshot.versions}

    # --------------------------------------------------------------- heartbeat

    def _heartbeat_loop(self) -> None:
        failing = False
        while not self._heartbeat_stop.is_set():
            try:
                self._directory.heartbeat(
                    self.replica_id,
                    self._live_generation,
                    self.address,
                    self.node,
                    sorted(str(key) for key in self.sessions.loaded_keys()),
                    ttl_s=HEARTBEAT_TTL_S,
                )
                self._preparation.publish_book(
                    self.replica_id, self.predictor.shadows.to_json(), HEARTBEAT_TTL_S
                )
                if failing:
                    _log.info("heartbeats reach Redis again")
                failing = False
            except Exception as error:
                # Redis down must not stop serving; say so once, not every second.
                if not failing:
                    _log.warning("heartbeat failed (serving goes on): %s", error)
                failing = True
            self._heartbeat_now.wait(HEARTBEAT_INTERVAL_S)
            self._heartbeat_now.clear()

    # ------------------------------------------------------------------- close

    def close(self) -> None:
        """Stops accepting, drains, stops the threads, leaves the directory. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._server.stop(self.settings.shutdown_grace_s)
        self._stop_threads()

    async def aclose(self) -> None:
        """``close`` for a replica serving on the running loop: drains there."""
        if self._closed:
            return
        self._closed = True
        if self._serving is not None and not self._serving.done():
            self._serving.cancel()
        await self._server.stop_async(self.settings.shutdown_grace_s)
        # Joins threads: off the loop, which may be serving other work.
        await asyncio.get_running_loop().run_in_executor(None, self._stop_threads)

    def _stop_threads(self) -> None:
        self._watcher.stop()
        self._heartbeat_stop.set()
        self._heartbeat_now.set()
        if self._heartbeat_thread.is_alive():
            self._heartbeat_thread.join(5.0)
        try:
            self._directory.remove(self.replica_id)
        except Exception as error:
            _log.warning(
                "could not remove replica %s from the directory: %s", self.replica_id, error
            )
        self._redis.close()


def _servable(table: RouteTable, key: VersionKey) -> bool:
    return table.has_version(key) and table.version_info(key).servable
