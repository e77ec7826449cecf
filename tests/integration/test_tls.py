"""TLS and mTLS on both planes, with a CA made in the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelplane.client import ModelplaneClient
from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.security.tls import channel_credentials
from modelplane.serving.grpc_server import AioGrpcServer
from modelplane.serving.security import data_plane_security
from tests.security_material import Pki, make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _check(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


@pytest.fixture()
def control(redis_url: str, key_prefix: str, tmp_path: Path, pki: Pki) -> Iterator[ControlPlane]:
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path, control_port=0,
        tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, shutdown_grace_s=0.2,
    )
    plane = ControlPlane(settings, redis_url, max_workers=4)
    plane.start()
    yield plane
    plane.stop()


def test_the_control_plane_speaks_tls_to_a_client_trusting_its_ca(
    control: ControlPlane, pki: Pki
) -> None:
    with ModelplaneClient(control.address, credentials=channel_credentials(pki.ca)) as client:
        client.create_model("over-tls")
        assert [m.name for m in client.list_models()] == ["over-tls"]


def test_a_plaintext_client_against_the_tls_port_fails_cleanly(control: ControlPlane) -> None:
    with grpc.insecure_channel(control.address) as channel, pytest.raises(grpc.RpcError) as err:
        _check(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # The server is still fine for TLS clients afterwards.


def test_a_client_not_trusting_the_ca_is_refused(control: ControlPlane, tmp_path: Path) -> None:
    stranger = make_pki(tmp_path / "other")
    creds = channel_credentials(stranger.ca)
    with grpc.secure_channel(control.address, creds) as channel, pytest.raises(
        grpc.RpcError
    ) as err:
        _check(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def _data_plane(settings: Settings) -> AioGrpcServer:
    server = AioGrpcServer(
        "127.0.0.1:0", [], [], reuse_port=False, **data_plane_security(settings).kwargs()
    )
    server.start()
    return server


def test_the_data_plane_requires_client_certificates_with_mtls(pki: Pki) -> None:
    settings = Settings(
        tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_client_ca_file=pki.ca
    )
    server = _data_plane(settings)
    address = f"127.0.0.1:{server.port}"
    try:
        with grpc.secure_channel(address, channel_credentials(pki.ca)) as anonymous:
            with pytest.raises(grpc.RpcError) as err:
                _check(anonymous)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        mutual = channel_credentials(pki.ca, pki.client_cert, pki.client_key)
        with grpc.secure_channel(address, mutual) as channel:
            assert _check(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop(0.1)


def test_half_a_client_certificate_is_a_clear_error(pki: Pki) -> None:
    with pytest.raises(ValueError, match="give both the certificate and its key"):
        channel_credentials(pki.ca, pki.client_cert, None)
