"""What a replica's gRPC server enforces: auth per method, limits, TLS.

Inference is open unless endpoints are listed in ``inference_auth_endpoints``
(then any valid token, reader or above, may predict on them). The Open
Inference Protocol's repository calls change what is loaded, so with the
platform's auth on they need a deployer, like the control plane's writes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from modelplane.config import Settings
from modelplane.security.authenticator import Authenticator
from modelplane.security.interceptors import (
    ENDPOINT,
    Access,
    AsyncAuthInterceptor,
    EndpointPolicy,
)
from modelplane.security.limits import AsyncLimitsInterceptor
from modelplane.security.principals import Role
from modelplane.security.tls import server_credentials
from modelplane.serving.grpc_server import HandlerWrapper

R, D, ANY = Role.READER, Role.DEPLOYER, Role.ANYONE

_TABLE: dict[str, dict[str, Access]] = {
    "modelplane.v1.InferenceService": {"Predict": ENDPOINT},
    "inference.GRPCInferenceService": {
        "ServerLive": ANY,
        "ServerReady": ANY,
        "ModelReady": ENDPOINT,
        "ServerMetadata": ANY,
        "ModelMetadata": ENDPOINT,
        "ModelInfer": ENDPOINT,
        "ModelStreamInfer": ENDPOINT,
        "ModelStatistics": R,
        "RepositoryIndex": R,
        "RepositoryModelLoad": D,
        "RepositoryModelUnload": D,
    },
    "grpc.health.v1.Health": {"Check": ANY, "Watch": ANY, "List": ANY},
    "grpc.reflection.v1alpha.ServerReflection": {"ServerReflectionInfo": ANY},
    "grpc.reflection.v1.ServerReflection": {"ServerReflectionInfo": ANY},
}

DATA_PLANE_ACCESS: Mapping[str, Access] = {
    f"/{service}/{method}": access
    for service, methods in _TABLE.items()
    for method, access in methods.items()
}


@dataclass(frozen=True)
class ServerSecurity:
    """Keyword arguments for ``AioGrpcServer``, built from the settings."""

    wrappers: list[HandlerWrapper] = field(default_factory=list)
    credentials: grpc.ServerCredentials | None = None
    maximum_concurrent_rpcs: int | None = None
    max_message_bytes: int = 64 * 1024 * 1024

    def kwargs(self) -> dict[str, Any]:
        return {
            "wrappers": self.wrappers,
            "credentials": self.credentials,
            "maximum_concurrent_rpcs": self.maximum_concurrent_rpcs,
            "max_message_bytes": self.max_message_bytes,
        }


def data_plane_security(
    settings: Settings, limits_checked_by_handlers: Collection[str] = ()
) -> ServerSecurity:
    """``limits_checked_by_handlers``: methods whose handlers apply the tensor limits
    while decoding (given the same settings), so the limits interceptor does not."""
    endpoints = EndpointPolicy(settings.inference_auth_endpoints)
    wrappers: list[HandlerWrapper] = []
    if settings.auth_enabled or endpoints.active:
        authenticator = Authenticator.from_config(
            settings.auth_tokens,
            settings.auth_tokens_file,
            settings.auth_jwks_file,
            jwt_issuer=settings.auth_jwt_issuer,
            jwt_audience=settings.auth_jwt_audience,
            jwt_role_claim=settings.auth_jwt_role_claim,
        )
        wrappers.append(
            AsyncAuthInterceptor(
                authenticator,
                DATA_PLANE_ACCESS,
                enforce_roles=settings.auth_enabled,
                endpoints=endpoints,
            )
        )
    wrappers.append(
        AsyncLimitsInterceptor(
            settings.default_deadline_s,
            settings.max_deadline_s,
            settings.max_rows_per_request,
            settings.max_elements_per_tensor,
            limits_checked_by_handlers,
        )
    )
    credentials = None
    if settings.tls_cert_file and settings.tls_key_file:
        credentials = server_credentials(
            settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
        )
    return ServerSecurity(
        wrappers,
        credentials,
        settings.max_concurrent_rpcs or None,
        settings.max_message_bytes,
    )
