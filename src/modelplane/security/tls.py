"""TLS material from files -> gRPC credentials, for servers and clients.

With a client CA the server requires and verifies client certificates (mTLS).
"""

from __future__ import annotations

from pathlib import Path

import grpc


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{what}: {path} does not exist") from None


def server_credentials(
    cert_file: Path, key_file: Path, client_ca_file: Path | None = None
) -> grpc.ServerCredentials:
    pair = (_read(key_file, "tls_key_file"), _read(cert_file, "tls_cert_file"))
    if client_ca_file is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=_read(client_ca_file, "tls_client_ca_file"),
        require_client_auth=True,
    )


def channel_credentials(
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> grpc.ChannelCredentials:
    """Trusts ``ca_file`` (else the system roots); presents a client certificate if given."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("tls client certificate: give both the certificate and its key")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file, "tls_ca_file") if ca_file else None,
        private_key=_read(key_file, "tls_client_key_file") if key_file else None,
        certificate_chain=_read(cert_file, "tls_client_cert_file") if cert_file else None,
    )
