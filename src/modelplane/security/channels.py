"""Client side: channels that carry a bearer token, over TLS or not, with retries.

The token rides as ``authorization: Bearer ...`` metadata added by a client
interceptor, so it works on plaintext loopback channels too (gRPC's own call
credentials refuse insecure channels). Predictions are retried on UNAVAILABLE
by gRPC's retry policy: a replica going away mid-connection costs a retry, not
an error, and a Predict has no effect worth protecting from a repeat.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import grpc

PREDICT_RETRY_POLICY = {
    "methodConfig": [
        {
            "name": [
                {"service": "modelplane.v1.InferenceService", "method": "Predict"},
                {"service": "inference.GRPCInferenceService", "method": "ModelInfer"},
            ],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.02s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(
        self, details: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]
    ) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call on the channel."""

    def __init__(self, token: str) -> None:
        self._header: tuple[str, str | bytes] = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [m for m in (details.metadata or ()) if m[0] != "authorization"]
        return _ClientCallDetails(details, (*metadata, self._header))

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)


def open_channel(
    address: str,
    *,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
    retry_predictions: bool = True,
) -> tuple[grpc.Channel, grpc.Channel]:
    """(the channel to use, the raw channel to close)."""
    opts = list(options)
    if retry_predictions:
        opts.append(("grpc.service_config", json.dumps(PREDICT_RETRY_POLICY)))
    raw = (
        grpc.secure_channel(address, credentials, options=opts)
        if credentials is not None
        else grpc.insecure_channel(address, options=opts)
    )
    if not token:
        return raw, raw
    return grpc.intercept_channel(raw, BearerToken(token)), raw
