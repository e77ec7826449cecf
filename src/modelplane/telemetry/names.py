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
ATTR_ROUTE_REASON = "modelplane.route_reason"
ATTR_BATCH_REQUESTS = "modelplane.batch.requests"
ATTR_BATCH_ROWS = "modelplane.batch.rows"
ATTR_SHADOW_OK = "modelplane.shadow.ok"

# A Predict span's children, one per phase of the request.
ROUTE_SPAN = "modelplane.route"
QUEUE_SPAN = "modelplane.queue"
INFERENCE_SPAN = "modelplane.inference"
SHADOW_SPAN = "modelplane.shadow"

# Histogram of sampled input feature / output values, over ``drift.DRIFT_BOUNDS``.
FEATURE_VALUE = "modelplane.feature.value"
# Which input feature (``input:x[3]``) or output (``output:y[0]``) a value is.
ATTR_FEATURE = "modelplane.feature"

# OTLP log records carrying a batch of prediction records (JSON lines in the body).
PREDICTIONS_EVENT = "modelplane.predictions"
