"""The control plane with authentication on: every RPC has a role, and the audit
trail records the authenticated caller. Real Redis, real gRPC on port 0."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from modelplane.client import ModelplaneClient
from modelplane.config import Settings
from modelplane.control.auth import CONTROL_PLANE_ROLES
from modelplane.control.server import ControlPlane
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.security.channels import BearerToken
from modelplane.security.principals import Role
from modelplane.security.tokens import hash_token
from modelplane.v1 import registry_pb2
from tests.security_material import JwtIssuer

pytestmark = pytest.mark.integration

TOKENS = {"admin": "mpt_admin_secret", "deployer": "mpt_deployer_secret", "reader": "mpt_rdr"}
NAMES = {"admin": "ada", "deployer": "dev", "reader": "rita"}


@dataclass
class Plane:
    control: ControlPlane
    address: str
    issuer: JwtIssuer
    redis_url: str
    key_prefix: str

    def actors(self, model: str) -> set[str]:
        """Who the audit trail in Redis says acted on ``model``."""
        store = RedisRegistryStore.from_url(self.redis_url, self.key_prefix)
        try:
            return {e.actor for e in store.audit_events(None, None) if e.model == model}
        finally:
            store._redis.close()


@pytest.fixture(scope="module")
def plane(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    # One control plane for the module: the tests only read, or write names of their own.
    tmp_path: Path = tmp_path_factory.mktemp("auth")
    key_prefix = f"auth{uuid.uuid4().hex[:8]}"
    issuer = JwtIssuer(tmp_path)
    settings = Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_dir=tmp_path,
        control_port=0,
        auth_enabled=True,
        auth_tokens=[f"{NAMES[r]}:{r}:{hash_token(t)}" for r, t in TOKENS.items()],
        auth_jwks_file=issuer.jwks_file,
        shutdown_grace_s=0.5,
    )
    control = ControlPlane(settings, redis_url, max_workers=4)
    control.start()
    try:
        yield Plane(control, control.address, issuer, redis_url, key_prefix)
    finally:
        control.stop()


def _channel(address: str, token: str | None) -> grpc.Channel:
    raw = grpc.insecure_channel(address)
    return grpc.intercept_channel(raw, BearerToken(token)) if token else raw


def _served_methods(address: str) -> list[tuple[str, str, bool]]:
    """(full method path, input type, client-streaming) for every service, via reflection."""
    channel = _channel(address, TOKENS["reader"])
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    methods = []
    for service_name in database.get_services():
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            methods.append(
                (f"/{service.full_name}/{method.name}", method.input_type.full_name,
                 method.client_streaming)
            )
    channel.close()
    return methods


def _call(channel: grpc.Channel, path: str, input_type: str, streaming: bool) -> None:
    message = GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(input_type))()
    if streaming:
        channel.stream_unary(path, request_serializer=lambda m: m.SerializeToString(),
                             response_deserializer=lambda b: b)(iter([message]), timeout=10)
    else:
        channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=lambda b: b)(message, timeout=10)


def test_every_rpc_the_control_plane_serves_has_a_role(plane: Plane) -> None:
    served = _served_methods(plane.address)
    assert len(served) > 40
    unmapped = [path for path, _, _ in served if path not in CONTROL_PLANE_ROLES]
    assert unmapped == [], f"RPCs without a role in control/auth.py: {unmapped}"


def test_every_rpc_without_a_token_is_unauthenticated(plane: Plane) -> None:
    checked = 0
    with grpc.insecure_channel(plane.address) as channel:
        for path, input_type, streaming in _served_methods(plane.address):
            if CONTROL_PLANE_ROLES[path] is Role.ANYONE:
                continue
            with pytest.raises(grpc.RpcError) as caught:
                _call(channel, path, input_type, streaming)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, path
            assert caught.value.details() == "authorization: missing bearer token", path
            checked += 1
    assert checked > 40


def test_a_reader_is_denied_every_rpc_above_its_role(plane: Plane) -> None:
    denied = 0
    with _channel(plane.address, TOKENS["reader"]) as channel:
        for path, input_type, streaming in _served_methods(plane.address):
            required = CONTROL_PLANE_ROLES[path]
            if required <= Role.READER:
                continue
            with pytest.raises(grpc.RpcError) as caught:
                _call(channel, path, input_type, streaming)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, path
            assert caught.value.details() == (
                f"{path}: needs role {required.label}; rita has reader"
            )
            denied += 1
    assert denied >= 20


def test_health_needs_no_token(plane: Plane) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(plane.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_audit_trail_records_the_authenticated_caller_not_the_claimed_one(
    plane: Plane,
) -> None:
    with ModelplaneClient(plane.address, token=TOKENS["deployer"]) as client:
        client.registry.CreateModel(
            registry_pb2.CreateModelRequest(name="audited"),
            metadata=(("x-modelplane-actor", "mallory"), ("x-modelplane-reason", "test")),
        )
    assert plane.actors("audited") == {"dev"}


def test_a_jwt_caller_is_recorded_by_its_subject_and_bounded_by_its_role(plane: Plane) -> None:
    deployer = plane.issuer.token("carol@example.com", "deployer")
    with ModelplaneClient(plane.address, token=deployer) as client:
        client.create_model("jwt-made")
        with pytest.raises(grpc.RpcError) as caught:
            client.delete_version("jwt-made", 1)
    assert plane.actors("jwt-made") == {"carol@example.com"}
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == (
        "/modelplane.v1.RegistryService/DeleteVersion: needs role admin; "
        "carol@example.com has deployer"
    )


@pytest.mark.parametrize("kind", ["expired", "forged"])
def test_expired_or_forged_jwts_are_unauthenticated(plane: Plane, kind: str) -> None:
    token = (
        plane.issuer.token("eve", "admin", ttl_s=-300)
        if kind == "expired"
        else plane.issuer.forged("eve", "admin")
    )
    with ModelplaneClient(plane.address, token=token) as client, pytest.raises(
        grpc.RpcError
    ) as caught:
        client.list_models()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    expected = (
        "authorization: the JWT has expired"
        if kind == "expired"
        else "authorization: JWT rejected: Signature verification failed"
    )
    assert caught.value.details() == expected
