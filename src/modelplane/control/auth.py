"""Who may call which control-plane RPC, and the interceptor enforcing it.

Every RPC of every service the control plane serves has a row here; a method
without one is refused when auth is on, and a test fails when a service grows
an RPC nobody mapped. Roles are ordered: admin > deployer > reader.

- reader: reads anything (models, routes, stats, the audit trail).
- deployer: changes what is served (register, alias, route, rollouts, runs) and
  pushes telemetry and feedback, which steer rollout gates.
- admin: destroys (delete versions) and sets environments' policies.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from modelplane.config import Settings
from modelplane.security.authenticator import Authenticator
from modelplane.security.interceptors import AuthInterceptor
from modelplane.security.principals import Role

R, D, A, ANY = Role.READER, Role.DEPLOYER, Role.ADMIN, Role.ANYONE

_TABLE: dict[str, dict[str, Role]] = {
    "modelplane.v1.RegistryService": {
        "CreateModel": D,
        "GetModel": R,
        "ListModels": R,
        "RegisterVersion": D,
        "GetVersion": R,
        "ListVersions": R,
        "ArchiveVersion": D,
        "DeleteVersion": A,
        "VerifyVersion": D,
        "SetAlias": D,
        "GetAlias": R,
        "DeleteAlias": D,
        "ListAliasHistory": R,
        "QueryAudit": R,
        "ServedAt": R,
        "RetireEndpoint": D,
        "GcArtifacts": A,
    },
    "modelplane.v1.RoutingService": {
        "SetRoute": D,
        "GetRoute": R,
        "ListRoutes": R,
        "DeleteRoute": D,
        "Rollback": D,
        "GetShadowStats": R,
    },
    "modelplane.v1.TelemetryService": {
        "GetStats": R,
        "GetLatencySeries": R,
        "ListAlerts": R,
        "Feedback": D,
    },
    "modelplane.v1.RolloutService": {
        "StartRollout": D,
        "GetRollout": R,
        "PromoteRollout": D,
        "AbortRollout": D,
    },
    "modelplane.v1.ExperimentService": {
        "CreateExperiment": D,
        "ListExperiments": R,
        "StartRun": D,
        "LogBatch": D,
        "EndRun": D,
        "GetRun": R,
        "SearchRuns": R,
        "GetMetricHistory": R,
        "UploadArtifact": D,
        "RegisterFromRun": D,
    },
    "modelplane.v1.ScalingService": {
        "Scale": D,
        "PutServingGroup": D,
        "GetStatus": R,
    },
    "modelplane.v1.EnvironmentService": {
        "SetEnvironment": A,
        "GetEnvironment": R,
        "ListEnvironments": R,
        "Promote": D,
        "ListPromotions": R,
    },
    # Webhooks post platform events to any URL: only admins point them somewhere.
    "modelplane.v1.WebhookService": {
        "CreateSubscription": A,
        "ListSubscriptions": D,
        "DeleteSubscription": A,
        "ListDeliveries": R,
    },
    # OTLP receivers: replicas export with a token of their own (deployer).
    "opentelemetry.proto.collector.trace.v1.TraceService": {"Export": D},
    "opentelemetry.proto.collector.metrics.v1.MetricsService": {"Export": D},
    "opentelemetry.proto.collector.logs.v1.LogsService": {"Export": D},
    # Probes from load balancers and kubelets carry no credentials.
    "grpc.health.v1.Health": {"Check": ANY, "Watch": ANY, "List": ANY},
    # The schema is not secret, but who asks for it is worth knowing.
    "grpc.reflection.v1alpha.ServerReflection": {"ServerReflectionInfo": R},
    "grpc.reflection.v1.ServerReflection": {"ServerReflectionInfo": R},
}

CONTROL_PLANE_ROLES: Mapping[str, Role] = {
    f"/{service}/{method}": role
    for service, methods in _TABLE.items()
    for method, role in methods.items()
}


def authenticator_from(settings: Settings) -> Authenticator:
    """The credentials the settings configure; raises ``ValueError`` when there are none."""
    return Authenticator.from_config(
        settings.auth_tokens,
        settings.auth_tokens_file,
        settings.auth_jwks_file,
        jwt_issuer=settings.auth_jwt_issuer,
        jwt_audience=settings.auth_jwt_audience,
        jwt_role_claim=settings.auth_jwt_role_claim,
    )


def control_interceptors(settings: Settings) -> list[grpc.ServerInterceptor]:
    """What the control plane adds after its error interceptor: auth, when it is on."""
    if not settings.auth_enabled:
        return []
    return [AuthInterceptor(authenticator_from(settings), CONTROL_PLANE_ROLES)]
