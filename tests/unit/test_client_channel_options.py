"""The data-plane channel options the Python client uses, and README tells other
languages to copy."""

from __future__ import annotations

import json
from typing import Any

from modelplane.client import inference_channel_options


def _service_config(options: list[tuple[str, str | int]]) -> Any:
    (text,) = [value for key, value in options if key == "grpc.service_config"]
    assert isinstance(text, str)
    return json.loads(text)


def test_predictions_wait_for_a_connection_and_retry_on_unavailable_by_default() -> None:
    options = inference_channel_options()
    (method,) = _service_config(options)["methodConfig"]
    assert {"service": "modelplane.v1.InferenceService", "method": "Predict"} in method["name"]
    assert {"service": "inference.GRPCInferenceService", "method": "ModelInfer"} in method["name"]
    assert method["waitForReady"] is True
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert method["retryPolicy"]["maxAttempts"] == 4
    values = dict(options)
    assert values["grpc.initial_reconnect_backoff_ms"] == 100
    assert values["grpc.max_reconnect_backoff_ms"] == 1000
    assert values["grpc.max_receive_message_length"] == 64 << 20


def test_without_retry_the_channel_still_waits_and_without_waiting_it_fails_fast() -> None:
    (no_retry,) = _service_config(inference_channel_options(retry=False))["methodConfig"]
    assert no_retry["waitForReady"] is True and "retryPolicy" not in no_retry
    (fail_fast,) = _service_config(
        inference_channel_options(retry=False, wait_for_ready=False)
    )["methodConfig"]
    assert "waitForReady" not in fail_fast and "retryPolicy" not in fail_fast
    # One service config only: gRPC would take just one of several.
    keys = [key for key, _ in inference_channel_options()]
    assert keys.count("grpc.service_config") == 1
