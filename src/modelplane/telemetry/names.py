"""The names replicas and the control plane agree on: instruments, spans, attributes."""

from __future__ import annotations

# Histogram of Predict latency, in seconds, over ``histogram.BOUNDS_S``.
PREDICT_DURATION = "modelplane.predict.duration"

RPC_SERVICE = "modelplane.v1.InferenceService"
RPC_METHOD = "Predict"
PREDICT_SPAN = f"{RPC_SERVICE}/{RPC_METHOD}"

ATTR_ENDPOINT = "modelplane.endpoint"
ATTR_MODEL = "modelplane.model"
ATTR_VERSION = "modelplane.version"
ATTR_PREDICTION_ID = "modelplane.prediction_id"
ATTR_STATUS = "modelplane.status"
