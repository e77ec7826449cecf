"""The Python client: what the CLI, the demo, the tests and the benchmarks call.

One object talks to both planes: the control plane (registry, routing, stats)
and the data plane (Predict). Uploads stream from disk in chunks, so the client
never holds a whole model in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import grpc
import numpy as np

from modelplane.codec.tensors import array_to_tensor, tensor_to_array
from modelplane.security.channels import PREDICT_RETRY_POLICY, open_channel
from modelplane.v1 import (
    experiments_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    rollout_pb2_grpc,
    routing_pb2,
    routing_pb2_grpc,
    scaling_pb2,
    scaling_pb2_grpc,
    telemetry_pb2,
    telemetry_pb2_grpc,
    webhooks_pb2_grpc,
)

UPLOAD_CHUNK_BYTES = 1 << 20
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]

# How a data-plane channel rides out a replica going away (killed, crashed,
# restarted). When its connection breaks, gRPC reconnects at once; that attempt
# can land on the dead process's listening socket, which lingers in the
# SO_REUSEPORT group for ~0.1 s while the kernel tears the process down and is
# then reset. The channel then sits in TRANSIENT_FAILURE for the reconnect
# backoff (1 s by default, growing to 120 s) and fails every RPC at once with
# UNAVAILABLE "failed to connect to all addresses": thousands of errors in one
# second after some kills (python -m loadtests.chaos_replicas, before these
# options: 77 % success without retry, 99.95 % with it). Hence, on the data plane:
# predictions wait for a ready connection (waitForReady: an RPC is sent once,
# when a connection is up, so this is no retry) and the channel redials after
# 100 ms (gRPC's floor), backing off to 1 s at most. In gRPC core,
# ``grpc.min_reconnect_backoff_ms`` is the time one connection attempt may
# take; 5 s leaves room for a handshake on a loaded host.
INFERENCE_RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.min_reconnect_backoff_ms", 5000),
)
PREDICT_METHODS: tuple[dict[str, str], ...] = (
    {"service": "modelplane.v1.InferenceService", "method": "Predict"},
    {"service": "inference.GRPCInferenceService", "method": "ModelInfer"},
)

# (model, version or alias, weight)
TargetSpec = tuple[str, "int | str", int]
# (model, version or alias, percent of requests mirrored)
ShadowSpec = tuple[str, "int | str", float]


class ModelplaneClient:
    """``token`` is sent as a bearer token to both planes (``inference_token``, if
    given, to the data plane instead); ``credentials`` turn TLS on (see
    ``modelplane.security.tls.channel_credentials``). Predictions are retried on
    UNAVAILABLE unless ``retry_predictions`` is off. They wait for a connection to a
    replica (up to their deadline) rather than failing while the channel reconnects,
    unless ``wait_for_ready`` is off; see ``inference_channel_options``."""

    def __init__(
        self,
        control_address: str,
        inference_address: str | None = None,
        *,
        token: str | None = None,
        inference_token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        retry_predictions: bool = True,
        wait_for_ready: bool = True,
    ) -> None:
        self._control, self._control_raw = open_channel(
            control_address, token=token, credentials=credentials, options=_CHANNEL_OPTIONS
        )
        self._inference: grpc.Channel | None = None
        self._inference_raw: grpc.Channel | None = None
        if inference_address:
            self._inference, self._inference_raw = open_channel(
                inference_address,
                token=inference_token or token,
                credentials=credentials,
                options=inference_channel_options(
                    retry=retry_predictions, wait_for_ready=wait_for_ready
                ),
                # The service config in the options carries the retry policy.
                retry_predictions=False,
            )
        self.registry = registry_pb2_grpc.RegistryServiceStub(self._control)
        self.routing = routing_pb2_grpc.RoutingServiceStub(self._control)
        self.telemetry = telemetry_pb2_grpc.TelemetryServiceStub(self._control)
        self.rollouts = rollout_pb2_grpc.RolloutServiceStub(self._control)
        self.experiments = experiments_pb2_grpc.ExperimentServiceStub(self._control)
        self.environments = experiments_pb2_grpc.EnvironmentServiceStub(self._control)
        self.webhooks = webhooks_pb2_grpc.WebhookServiceStub(self._control)
        self.scaling = scaling_pb2_grpc.ScalingServiceStub(self._control)
        self.inference = (
            inference_pb2_grpc.InferenceServiceStub(self._inference) if self._inference else None
        )

    # --- registry -------------------------------------------------------------
    def create_model(self, name: str, description: str = "") -> registry_pb2.Model:
        return self.registry.CreateModel(
            registry_pb2.CreateModelRequest(name=name, description=description)
        )

    def list_models(self) -> list[registry_pb2.Model]:
        return list(self.registry.ListModels(registry_pb2.ListModelsRequest()).models)

    def get_model(self, name: str) -> registry_pb2.Model:
        return self.registry.GetModel(registry_pb2.GetModelRequest(name=name))

    def register(
        self,
        model: str,
        artifact: Path | bytes,
        description: str = "",
        create_model: bool = True,
    ) -> registry_pb2.ModelVersion:
        header = registry_pb2.RegisterVersionHeader(
            model=model, description=description, create_model=create_model
        )
        return self.registry.RegisterVersion(_upload_stream(header, artifact))

    def list_versions(self, model: str, where: str = "") -> list[registry_pb2.ModelVersion]:
        """All versions, or those matching ``where``, e.g. ``metrics.auc>0.9 and tags.team=x``."""
        return list(
            self.registry.ListVersions(
                registry_pb2.ListVersionsRequest(model=model, where=where)
            ).versions
        )

    def register_version(
        self,
        model: str,
        artifact: Path | bytes | None = None,
        *,
        description: str = "",
        create_model: bool = True,
        lineage: registry_pb2.Lineage | None = None,
        idempotency_key: str = "",
        reference_npz: bytes = b"",
        reference_rtol: float | None = None,
        reference_atol: float | None = None,
        source_uri: str = "",
        actor: str = "",
        reason: str = "",
    ) -> registry_pb2.ModelVersion:
        """Registers from a file, bytes or (``artifact`` None) a server-side ``source_uri``.

        Returns the version READY or FAILED (see ``status_reason``).
        """
        header = registry_pb2.RegisterVersionHeader(
            model=model,
            description=description,
            create_model=create_model,
            lineage=lineage,
            idempotency_key=idempotency_key,
            reference_npz=reference_npz,
            source_uri=source_uri,
        )
        if reference_rtol is not None:
            header.reference_rtol = reference_rtol
        if reference_atol is not None:
            header.reference_atol = reference_atol
        stream = _upload_stream(header, artifact if artifact is not None else b"")
        return self.registry.RegisterVersion(stream, metadata=_audit_metadata(actor, reason))

    def get_version(self, model: str, version: int) -> registry_pb2.ModelVersion:
        request = registry_pb2.GetVersionRequest(model=model, version=version)
        return self.registry.GetVersion(request)

    def verify_version(
        self, model: str, version: int, actor: str = ""
    ) -> registry_pb2.ModelVersion:
        return self.registry.VerifyVersion(
            registry_pb2.GetVersionRequest(model=model, version=version),
            metadata=_audit_metadata(actor, ""),
        )

    def archive_version(
        self, model: str, version: int, actor: str = "", reason: str = ""
    ) -> registry_pb2.ModelVersion:
        return self.registry.ArchiveVersion(
            registry_pb2.ArchiveVersionRequest(model=model, version=version),
            metadata=_audit_metadata(actor, reason),
        )

    def delete_version(self, model: str, version: int, actor: str = "", reason: str = "") -> None:
        self.registry.DeleteVersion(
            registry_pb2.DeleteVersionRequest(model=model, version=version),
            metadata=_audit_metadata(actor, reason),
        )

    def alias_history(self, model: str, alias: str) -> list[registry_pb2.AliasChange]:
        return list(
            self.registry.ListAliasHistory(
                registry_pb2.ListAliasHistoryRequest(model=model, alias=alias)
            ).changes
        )

    def audit(
        self,
        model: str = "",
        endpoint: str = "",
        actor: str = "",
        action: str = "",
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 0,
    ) -> list[registry_pb2.AuditEvent]:
        request = registry_pb2.QueryAuditRequest(
            model=model, endpoint=endpoint, actor=actor, action=action, limit=limit
        )
        if since_ms is not None:
            request.since.FromMilliseconds(since_ms)
        if until_ms is not None:
            request.until.FromMilliseconds(until_ms)
        return list(self.registry.QueryAudit(request).events)

    def served_at(self, endpoint: str, at_ms: int) -> registry_pb2.ServedAtResponse:
        request = registry_pb2.ServedAtRequest(endpoint=endpoint)
        request.time.FromMilliseconds(at_ms)
        return self.registry.ServedAt(request)

    def set_alias(self, model: str, alias: str, version: int) -> registry_pb2.Alias:
        return self.registry.SetAlias(
            registry_pb2.SetAliasRequest(model=model, alias=alias, version=version)
        )

    def get_alias(self, model: str, alias: str) -> registry_pb2.Alias:
        return self.registry.GetAlias(registry_pb2.GetAliasRequest(model=model, alias=alias))

    def delete_alias(self, model: str, alias: str) -> None:
        self.registry.DeleteAlias(registry_pb2.DeleteAliasRequest(model=model, alias=alias))

    # --- routing --------------------------------------------------------------
    def get_route(self, endpoint: str) -> routing_pb2.Route | None:
        try:
            return self.routing.GetRoute(routing_pb2.GetRouteRequest(endpoint=endpoint))
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def list_routes(self) -> list[routing_pb2.Route]:
        return list(self.routing.ListRoutes(routing_pb2.ListRoutesRequest()).routes)

    def set_route(
        self,
        endpoint: str,
        targets: Sequence[TargetSpec],
        expected_revision: int | None = None,
        *,
        shadows: Sequence[ShadowSpec] = (),
        fallback: tuple[str, int | str] | None = None,
        sticky_input: str = "",
        max_batch_size: int = 0,
        max_wait_us: int = 0,
    ) -> routing_pb2.Route:
        """Route ``endpoint``; without ``expected_revision`` the current one is read first.

        ``targets``: (model, version or alias, weight). ``shadows``: (model, version
        or alias, percent of requests mirrored). ``fallback``: (model, version or
        alias) answering when the picked version fails. ``sticky_input``: the input
        whose value pins a caller to one version. ``max_batch_size`` and
        ``max_wait_us`` set every target's dynamic batching (0: the replica's
        default; a batch size of 1 turns it off).
        """
        if expected_revision is None:
            current = self.get_route(endpoint)
            expected_revision = current.revision if current else 0
        request = routing_pb2.SetRouteRequest(
            endpoint=endpoint,
            targets=[_route_target(t, max_batch_size, max_wait_us) for t in targets],
            expected_revision=expected_revision,
            shadows=[_shadow_target(s) for s in shadows],
            sticky_input=sticky_input,
        )
        if fallback is not None:
            # A fallback's weight is ignored; its batching is the route's.
            request.fallback.CopyFrom(_route_target((*fallback, 100), max_batch_size, max_wait_us))
        return self.routing.SetRoute(request)

    # --- inference ------------------------------------------------------------
    def predict(
        self,
        endpoint: str | None = None,
        inputs: Mapping[str, np.ndarray] | None = None,
        *,
        model: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        output_names: Iterable[str] = (),
        timeout_s: float | None = 10.0,
        metadata: Sequence[tuple[str, str]] | None = None,
    ) -> inference_pb2.PredictResponse:
        if self.inference is None:
            raise ValueError("this client has no inference address")
        request = build_predict_request(
            endpoint, inputs or {}, model=model, version=version, alias=alias,
            output_names=output_names,
        )
        return self.inference.Predict(
            request, timeout=timeout_s, metadata=tuple(metadata) if metadata else None
        )

    # --- telemetry ------------------------------------------------------------
    def stats(
        self, endpoint: str = "", window_seconds: int = 0
    ) -> list[telemetry_pb2.VersionStats]:
        response = self.telemetry.GetStats(
            telemetry_pb2.GetStatsRequest(endpoint=endpoint, window_seconds=window_seconds)
        )
        return list(response.stats)

    def scale(
        self,
        endpoint: str = "",
        *,
        group: str = "",
        replicas: int | None = None,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        target_ongoing_requests: float = 0.0,
    ) -> scaling_pb2.ServingGroup:
        """A fixed ``replicas`` count, or an autoscaling range ``min_replicas..max_replicas``."""
        request = scaling_pb2.ScaleRequest(endpoint=endpoint, group=group)
        if replicas is not None:
            request.replicas = replicas
        elif min_replicas is not None or max_replicas is not None:
            request.autoscaling.CopyFrom(
                scaling_pb2.Autoscaling(
                    min_replicas=min_replicas or 0,
                    max_replicas=max_replicas or 0,
                    target_ongoing_requests=target_ongoing_requests,
                )
            )
        return self.scaling.Scale(request)

    def put_serving_group(
        self, name: str, inference_port: int = 0, endpoints: list[str] | None = None
    ) -> scaling_pb2.ServingGroup:
        return self.scaling.PutServingGroup(
            scaling_pb2.PutServingGroupRequest(
                name=name, inference_port=inference_port, endpoints=endpoints or []
            )
        )

    def status(self) -> scaling_pb2.StatusResponse:
        return self.scaling.GetStatus(scaling_pb2.GetStatusRequest())

    def close(self) -> None:
        self._control_raw.close()
        if self._inference_raw is not None:
            self._inference_raw.close()

    def __enter__(self) -> ModelplaneClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def inference_channel_options(
    *, retry: bool = True, wait_for_ready: bool = True
) -> list[tuple[str, str | int]]:
    """gRPC options of a data-plane channel; Go and Java callers set the same (README)."""
    method_config: dict[str, object] = {"name": list(PREDICT_METHODS)}
    if wait_for_ready:
        method_config["waitForReady"] = True
    if retry:
        method_config["retryPolicy"] = PREDICT_RETRY_POLICY["methodConfig"][0]["retryPolicy"]
    return [
        *_CHANNEL_OPTIONS,
        *INFERENCE_RECONNECT_OPTIONS,
        ("grpc.service_config", json.dumps({"methodConfig": [method_config]})),
    ]


def build_predict_request(
    endpoint: str | None,
    inputs: Mapping[str, np.ndarray],
    *,
    model: str | None = None,
    version: int | None = None,
    alias: str | None = None,
    output_names: Iterable[str] = (),
) -> inference_pb2.PredictRequest:
    request = inference_pb2.PredictRequest(
        inputs=[array_to_tensor(name, array) for name, array in inputs.items()],
        output_names=list(output_names),
    )
    if endpoint:
        request.endpoint = endpoint
    elif model:
        request.model.model = model
        if version is not None:
            request.model.version = version
        elif alias:
            request.model.alias = alias
    return request


def outputs_of(response: inference_pb2.PredictResponse) -> dict[str, np.ndarray]:
    return {t.name: tensor_to_array(t) for t in response.outputs}


def _route_target(
    spec: TargetSpec, max_batch_size: int = 0, max_wait_us: int = 0
) -> routing_pb2.RouteTarget:
    model, ref, weight = spec
    target = routing_pb2.RouteTarget(
        model=model, weight=weight, max_batch_size=max_batch_size, max_wait_us=max_wait_us
    )
    if _is_version(ref):
        target.version = int(ref)
    else:
        target.alias = str(ref)
    return target


def _shadow_target(spec: ShadowSpec) -> routing_pb2.ShadowTarget:
    model, ref, percent = spec
    target = routing_pb2.ShadowTarget(model=model, percent=percent)
    if _is_version(ref):
        target.version = int(ref)
    else:
        target.alias = str(ref)
    return target


def _is_version(ref: int | str) -> bool:
    return isinstance(ref, int) or ref.isdigit()


def _upload_stream(
    header: registry_pb2.RegisterVersionHeader, artifact: Path | bytes
) -> Iterator[registry_pb2.RegisterVersionRequest]:
    yield registry_pb2.RegisterVersionRequest(header=header)
    if isinstance(artifact, bytes):
        for start in range(0, len(artifact), UPLOAD_CHUNK_BYTES):
            yield registry_pb2.RegisterVersionRequest(
                chunk=artifact[start : start + UPLOAD_CHUNK_BYTES]
            )
        return
    with open(artifact, "rb") as file:
        while chunk := file.read(UPLOAD_CHUNK_BYTES):
            yield registry_pb2.RegisterVersionRequest(chunk=chunk)


def _audit_metadata(actor: str, reason: str) -> tuple[tuple[str, str | bytes], ...]:
    """Who is acting and why, for the audit trail (until authentication replaces it)."""
    metadata: list[tuple[str, str | bytes]] = []
    if actor:
        metadata.append(("x-modelplane-actor", actor))
    if reason:
        metadata.append(("x-modelplane-reason", reason))
    return tuple(metadata)
