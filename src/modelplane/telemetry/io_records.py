"""What a replica ships about its predictions' inputs and outputs, off the predict path.

Two things, both buffered on the request (an O(1) append, bounded) and sent by
the telemetry's drain thread at the export cadence:

- **prediction records** (id, version, what was predicted for the first rows),
  so feedback hours later can be joined with them: one OTLP log record per batch,
  ``event_name`` ``modelplane.predictions``, body a JSON list, sent to the
  control plane's OTLP logs receiver;
- **drift samples**: up to ``drift_rows_per_interval`` rows per version and
  interval, counted into the ``modelplane.feature.value`` histogram (one series
  per feature, values as their drift-bin index, see ``drift``) by the drain
  thread, never by the request: one numpy pass per feature, whole bucket counts
  added at once.

When the control plane is unreachable the batch is dropped and counted
(``dropped_predictions``): a replica never queues without bound.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import grpc
import numpy as np
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from modelplane.telemetry.drift import BIN_COUNT, DRIFT_BOUNDS
from modelplane.telemetry.feedback import CLASS, INDEX, VALUE
from modelplane.telemetry.latency_push import HistogramPush
from modelplane.telemetry.names import (
    ATTR_ENDPOINT,
    ATTR_FEATURE,
    ATTR_MODEL,
    ATTR_VERSION,
    PREDICTIONS_EVENT,
)

log = logging.getLogger(__name__)

# Rows of a batched request whose predictions are kept for feedback.
MAX_ROWS_PER_PREDICTION = 16
# Features per tensor sampled for drift (wide tensors: the first ones only).
MAX_FEATURES_PER_TENSOR = 32

Arrays = Mapping[str, np.ndarray]


def predicted_rows(outputs: Arrays) -> tuple[str, list[Any]] | None:
    """(kind, predictions of the first rows) from the first output; None if not tabular."""
    if not outputs:
        return None
    array = next(iter(outputs.values()))
    if array.ndim == 0 or array.ndim > 2:
        return None
    if array.ndim == 2 and array.shape[0] == 1 and array.shape[1] > 1 and array.dtype.kind == "f":
        # The common case (one row of scores), without the general path's copies.
        return INDEX, [int(array.argmax())]
    single = array.ndim == 1 or array.shape[1] == 1
    head = array[:MAX_ROWS_PER_PREDICTION]
    if array.dtype.kind in "iub":
        return (CLASS, head.reshape(-1).astype(np.int64).tolist()) if single else None
    if array.dtype.kind in "USO":
        return (CLASS, [str(v) for v in head.reshape(-1)]) if single else None
    if array.dtype.kind == "f":
        if single:
            return VALUE, head.reshape(-1).astype(np.float64).tolist()
        return INDEX, np.argmax(head, axis=1).astype(np.int64).tolist()
    return None


def _single_score_width(outputs: Arrays) -> int:
    """k when the first output is one row of k > 1 float scores, else 0."""
    if not outputs:
        return 0
    array = next(iter(outputs.values()))
    if array.ndim == 2 and array.shape[0] == 1 and array.shape[1] > 1 and array.dtype.kind == "f":
        return int(array.shape[1])
    return 0


class IoRecorder:
    """Requests ``record`` on the event loop while one drain thread ``drain`` s."""

    def __init__(
        self,
        resource_attributes: Mapping[str, str],
        feature_histogram: HistogramPush | None,
        logs_endpoint: str | None,
        max_buffered: int = 10_000,
        drift_rows_per_interval: int = 16,
        export_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._feature_histogram = feature_histogram
        self._logs_endpoint = logs_endpoint
        self._export_timeout_s = export_timeout_s
        self._clock = clock
        self._max_buffered = max_buffered
        self._records: deque[tuple[str, tuple[str, str, int], Arrays, float]] = deque()
        self._drift_rows = drift_rows_per_interval
        self._samples: list[tuple[tuple[str, str, int], Arrays, Arrays]] = []
        self._sampled: dict[tuple[str, str, int], int] = {}
        self.dropped_predictions = 0
        self._resource = resource_pb2.Resource(
            attributes=[
                common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
                for k, v in resource_attributes.items()
            ]
        )
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._attribute_cache: dict[tuple[str, str, int, str], dict[str, str | int]] = {}
        self._json_prefixes: dict[tuple[str, str, int], str] = {}

    def record(
        self,
        endpoint: str,
        model: str,
        version: int,
        prediction_id: str,
        inputs: Arrays,
        outputs: Arrays,
    ) -> None:
        """On the request: appends references only, no numpy and no lock.

        ``deque.append`` is atomic, and the drain pops from the left, so the two
        never need a lock. What was predicted is worked out by the drain thread;
        until then the record holds a reference to the outputs (bounded by
        ``max_buffered`` records).
        """
        key = (endpoint, model, version)
        if self._logs_endpoint is not None:
            if len(self._records) >= self._max_buffered:
                self.dropped_predictions += 1
            else:
                self._records.append((prediction_id, key, outputs, self._clock()))
        if self._feature_histogram is not None:
            taken = self._sampled.get(key, 0)
            if taken < self._drift_rows:
                # Unlocked counter: a race may take a sample or two more; harmless.
                self._sampled[key] = taken + 1
                self._samples.append((key, inputs, outputs))

    def drain(self) -> None:
        """Off the request path: ships prediction records, records drift samples."""
        # Each record's JSON is written by hand around a cached per-version prefix:
        # this loop runs once per prediction, and a dict + json.dumps costs 3x more.
        records: list[str] = []
        pending = self._records
        dumps = json.dumps
        taken = []
        while pending:
            taken.append(pending.popleft())
        # The usual case, one row of float scores per request, vectorised: one
        # argmax over all of them instead of one numpy call per prediction.
        single_rows: dict[int, list[int]] = {}
        for width in {_single_score_width(outputs) for _, _, outputs, _ in taken} - {0}:
            picked = [i for i, entry in enumerate(taken) if _single_score_width(entry[2]) == width]
            stacked = np.concatenate([next(iter(taken[i][2].values())) for i in picked])
            for i, label in zip(picked, stacked.argmax(axis=1).tolist(), strict=True):
                single_rows[i] = [label]
        for i, (prediction_id, key, outputs, t) in enumerate(taken):
            single = single_rows.get(i)
            rows = (INDEX, single) if single is not None else predicted_rows(outputs)
            if rows is None:
                continue
            prefix = self._json_prefixes.get(key)
            if prefix is None:
                if len(self._json_prefixes) > 10_000:
                    self._json_prefixes.clear()
                prefix = self._json_prefixes[key] = (
                    f'{{"endpoint":{dumps(key[0])},"model":{dumps(key[1])},"version":{key[2]:d},'
                )
            # Ids are hex from the Predictor and class indices ints: no escaping
            # needed, which skips json.dumps (half this loop's cost) in the usual case.
            quoted_id = f'"{prediction_id}"' if prediction_id.isalnum() else dumps(prediction_id)
            predicted = rows[1]
            if rows[0] == INDEX:
                predicted_text = f"[{','.join(map(str, predicted))}]"
            else:
                predicted_text = dumps(predicted)
            records.append(
                f'{prefix}"id":{quoted_id},"kind":"{rows[0]}",'
                f'"predicted":{predicted_text},"t":{t!r}}}'
            )
        samples = self._samples
        self._samples = []
        self._sampled = {}
        if samples:
            self._record_samples(samples)
        if records:
            self._ship(records)

    def _record_samples(self, samples: list[tuple[tuple[str, str, int], Arrays, Arrays]]) -> None:
        histogram = self._feature_histogram
        assert histogram is not None
        # Rows of one tensor of one version, stacked: one numpy pass per feature.
        tables: dict[tuple[tuple[str, str, int], str, str], list[np.ndarray]] = {}
        for key, inputs, outputs in samples:
            for side, arrays in (("input", inputs), ("output", outputs)):
                for name, array in arrays.items():
                    if array.dtype.kind not in "iuf" or array.ndim == 0:
                        continue
                    table = array.reshape(array.shape[0], -1)[:, :MAX_FEATURES_PER_TENSOR]
                    tables.setdefault((key, side, name), []).append(table)
        for ((endpoint, model, version), side, name), parts in tables.items():
            widths = {part.shape[1] for part in parts}
            width = min(widths)
            table = np.concatenate([part[:, :width] for part in parts]).astype(np.float64)
            # Bisect-left bins, as ``drift.bin_index``; NaN lands in bin 0 there too.
            indices = np.searchsorted(np.asarray(DRIFT_BOUNDS), table, side="left")
            indices[np.isnan(table)] = 0
            for j in range(width):
                column = indices[:, j]
                if column.size == 0:
                    continue
                counts = np.bincount(column, minlength=BIN_COUNT)
                histogram.add_counts(
                    (endpoint, model, version, side, name, j),
                    self._attributes(endpoint, model, version, f"{side}:{name}[{j}]"),
                    counts.tolist(),
                    float(column.sum()),
                    float(column.min()),
                    float(column.max()),
                )

    def _attributes(
        self, endpoint: str, model: str, version: int, feature: str
    ) -> dict[str, str | int]:
        key = (endpoint, model, version, feature)
        cached = self._attribute_cache.get(key)
        if cached is None:
            if len(self._attribute_cache) > 10_000:
                self._attribute_cache.clear()
            cached = {
                ATTR_ENDPOINT: endpoint, ATTR_MODEL: model, ATTR_VERSION: version,
                ATTR_FEATURE: feature,
            }
            self._attribute_cache[key] = cached
        return cached

    def _ship(self, records: list[str]) -> None:
        assert self._logs_endpoint is not None
        if self._stub is None:
            self._channel = grpc.insecure_channel(self._logs_endpoint)
            self._stub = logs_service_pb2_grpc.LogsServiceStub(self._channel)  # type: ignore[no-untyped-call]
        now_ns = int(self._clock() * 1e9)
        request = logs_service_pb2.ExportLogsServiceRequest(
            resource_logs=[
                logs_pb2.ResourceLogs(
                    resource=self._resource,
                    scope_logs=[
                        logs_pb2.ScopeLogs(
                            log_records=[
                                logs_pb2.LogRecord(
                                    time_unix_nano=now_ns,
                                    event_name=PREDICTIONS_EVENT,
                                    body=common_pb2.AnyValue(
                                        bytes_value=f"[{','.join(records)}]".encode()
                                    ),
                                )
                            ]
                        )
                    ],
                )
            ]
        )
        try:
            self._stub.Export(request, timeout=self._export_timeout_s)
        except grpc.RpcError as error:
            self.dropped_predictions += len(records)
            log.warning(
                "could not ship %d prediction records to %s: %s",
                len(records), self._logs_endpoint, error,
            )

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None
