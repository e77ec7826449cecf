"""OpenTelemetry on a replica: one SERVER span and one latency sample per Predict.

Each ``DataPlaneTelemetry`` owns its tracer and meter providers (never the global
ones: several replicas, or several tests, may share one process) and exports with
the stock OTLP/gRPC exporters to every configured endpoint, typically the control
plane (whose receiver aggregates) and optionally a collector.

The serving code calls this on every request::

    with telemetry.observe_predict(context.invocation_metadata(), endpoint=req.endpoint) as obs:
        ...  # route, run the model
        obs.answered(endpoint, model, version, prediction_id)

It is on the hot path, and measurement on the 2-core development machine decided
its shape:

- The SDK's ``tracer.start_span`` + ``end`` costs ~35 µs bare and ~55 µs with this
  span's seven attributes (each is validated, under a lock). A finished span built
  once as a ``ReadableSpan`` (the type processors and exporters consume) and handed
  to the ``BatchSpanProcessor`` s costs ~5 µs. So the Predict span is never a live,
  current span: nothing is attached to or detached from the context.
- The stock OTLP encoder then costs ~85 µs of CPU per span on the export thread,
  more than serving the request. So not every request becomes an exported span.
  Every failed request and every request slower than ``slow_request_threshold_ms``
  is exported (tail rules, decided once the request is over, which is possible
  because the span is only built then); a caller's ``traceparent`` otherwise
  decides (sampled flag honoured, as the SDK's ParentBased sampler would); an
  untraced request is exported if it falls in ``trace_sample_ratio`` (by trace
  id), or else if it is among the ``slow_spans_per_interval`` slowest of its
  (endpoint, model, version, ok/failed) in the current export interval: exactly
  the exemplars the control plane shows.
- Span queues are bounded (``max_queue_size`` per export endpoint): an exporter
  stuck on an unreachable collector never blocks a request; what does not fit is
  dropped and counted in ``dropped_spans``.
- Every request is recorded in the latency histogram. The SDK's ``record`` costs
  ~15 µs per metric reader, so Predict latency is aggregated by hand (a bisect,
  ~1-2 µs) and pushed as the same OTLP DELTA histogram by ``latency_push``, one
  pusher thread per endpoint; attribute dicts are cached per (endpoint, model,
  version, status). Drift samples are counted the same way, off the request, so
  the replica runs no SDK meter provider at all.

The tracer provider still serves ``tracer`` for any other spans, through the same
processors.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from traceback import format_exception as tb_format
from types import TracebackType
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    get_current_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from modelplane.domain.errors import ModelplaneError
from modelplane.domain.timeline import PredictTimeline, ShadowTiming
from modelplane.telemetry.drift import INDEX_BOUNDS
from modelplane.telemetry.io_records import Arrays, IoRecorder
from modelplane.telemetry.latency_push import HistogramPush, HistogramSpec
from modelplane.telemetry.names import (
    ATTR_BATCH_REQUESTS,
    ATTR_BATCH_ROWS,
    ATTR_ENDPOINT,
    ATTR_MODEL,
    ATTR_PREDICTION_ID,
    ATTR_ROUTE_REASON,
    ATTR_SHADOW_OK,
    ATTR_STATUS,
    ATTR_VERSION,
    FEATURE_VALUE,
    INFERENCE_SPAN,
    PREDICT_SPAN,
    QUEUE_SPAN,
    ROUTE_SPAN,
    RPC_METHOD,
    RPC_SERVICE,
    SHADOW_SPAN,
)
from modelplane.telemetry.prometheus import ReplicaMetrics
from modelplane.telemetry.slowest import SlowestPerKey

__all__ = ["DataPlaneTelemetry", "PredictObservation"]

_log = logging.getLogger(__name__)

OK = "OK"
INTERNAL = "INTERNAL"
# A client that cancels (or whose deadline passes) is not a server failure, but it
# is not an answer either: it gets its own status so it is neither hidden in OK nor
# counted as INTERNAL.
CANCELLED = "CANCELLED"

INSTRUMENTATION_NAME = "modelplane.serving"

_TRACEPARENT = "traceparent"
_TRACESTATE = "tracestate"
# Far above any realistic number of (endpoint, model, version, status) combinations
# on one replica; only there so a flood of unknown endpoint names cannot grow the
# cache without bound.
_MAX_CACHED_ATTRIBUTE_SETS = 4096
# (endpoint, model, version, status): one latency series.
_SeriesKey = tuple[str, str, int, str]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
DRIFT_PUSH_EVERY = 10
_LOW_64_BITS = (1 << 64) - 1
_UNSET = Status(StatusCode.UNSET)

MetricAttributes = dict[str, str | int]
_SpanAttributes = dict[str, str | int | bool]


def _status_of(error: BaseException | None) -> str:
    if error is None:
        return OK
    if isinstance(error, ModelplaneError):
        return error.code.name
    if isinstance(error, asyncio.CancelledError):
        return CANCELLED
    return INTERNAL


class PredictObservation:
    """One Predict call being observed; the context manager ``observe_predict`` returns.

    Once finished it doubles as the record a span is built from, possibly later
    (when the slow-span reservoir is drained), so it holds plain values only.
    """

    __slots__ = (
        "_end_ns",
        "_endpoint",
        "_events",
        "_message",
        "_metadata",
        "_model",
        "_owner",
        "_parent",
        "_prediction_id",
        "_route_reason",
        "_span_id",
        "_start_ns",
        "_status",
        "_timeline",
        "_trace_id",
        "_version",
    )

    def __init__(
        self,
        owner: DataPlaneTelemetry,
        metadata: Sequence[tuple[str, str | bytes]],
        endpoint: str,
    ) -> None:
        self._owner = owner
        self._metadata = metadata
        self._endpoint = endpoint
        self._model = ""
        self._version = 0
        # Set by answered(); the span carries model/version/id only once it is.
        self._prediction_id = ""
        self._route_reason = ""
        self._parent: SpanContext | None = None
        self._trace_id = INVALID_TRACE_ID
        self._span_id = INVALID_SPAN_ID
        self._start_ns = 0
        self._end_ns = 0
        self._status = OK
        self._message = ""
        self._events: tuple[Event, ...] = ()
        self._timeline: PredictTimeline | None = None

    @property
    def trace_id_hex(self) -> str:
        """The request's trace id (set on entry), e.g. for logs."""
        return f"{self._trace_id:032x}"

    def answered(
        self,
        endpoint: str,
        model: str,
        version: int,
        prediction_id: str,
        timeline: PredictTimeline | None = None,
        route_reason: str = "",
    ) -> None:
        """Names what answered; call once routing has chosen a version. ``timeline``
        (the prediction's phases) becomes the child spans of an exported trace."""
        self._endpoint = endpoint
        self._model = model
        self._version = version
        self._prediction_id = prediction_id
        self._timeline = timeline
        if route_reason:
            self._route_reason = route_reason

    def record_io(self, inputs: Arrays, outputs: Arrays, route_reason: str = "") -> None:
        """Hands the decoded inputs and the outputs over for feedback and drift.

        Call after ``answered``. Cheap: the record is buffered and shipped later by
        the drain thread; nothing here does I/O.
        """
        self._route_reason = route_reason
        recorder = self._owner._io
        if recorder is not None and self._prediction_id:
            recorder.record(
                self._endpoint, self._model, self._version, self._prediction_id, inputs, outputs
            )

    def __enter__(self) -> PredictObservation:
        owner = self._owner
        parent = owner._remote_parent(self._metadata)
        self._metadata = ()  # not needed any more; do not keep the call's metadata alive
        if parent is None:
            self._trace_id = owner._getrandbits(128)
        else:
            self._parent = parent
            self._trace_id = parent.trace_id
        self._span_id = owner._getrandbits(64)
        self._start_ns = owner._clock_ns()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        owner = self._owner
        end_ns = owner._clock_ns()
        self._end_ns = end_ns
        duration_ns = max(end_ns - self._start_ns, 0)
        status = OK
        if exc is not None:
            status = self._failed(exc, end_ns)
        # One key for the slow-span reservoir, the histogram series and its attributes.
        key = (self._endpoint, self._model, self._version, status)
        owner._finished(self, duration_ns, key)
        if owner._prometheus is not None:
            owner._prometheus.observe(
                self._endpoint, self._model, self._version, duration_ns / 1e9, status == OK
            )
        owner._latency.record(key, owner._metric_attributes(key), duration_ns / 1e9)
        # Returning None lets the exception propagate.

    def _failed(self, error: BaseException, end_ns: int) -> str:
        status = _status_of(error)
        self._status = status
        self._message = (
            error.message if isinstance(error, ModelplaneError) else type(error).__name__
        )
        if status == INTERNAL:
            # A bug: worth its stack trace, formatted now so no frame outlives the call.
            self._events = (_exception_event(error, end_ns),)
        return status


class DataPlaneTelemetry:
    """Tracing and latency metrics for one replica, exported over OTLP/gRPC.

    ``clock_ns`` stamps span start/end and measures the duration (one clock for
    both, so a span's length and its histogram sample agree); tests may inject one.
    Spans are batched and sent every ``metric_export_interval_ms`` as well, so
    both signals reach the control plane with the same lag. Each endpoint gets its
    own span processor and metric reader, so a dead collector never holds back the
    control plane's feed (a reader costs ~15 µs per request, so keep the list short).
    """

    def __init__(
        self,
        otlp_endpoints: list[str],
        service_name: str,
        replica_id: str,
        metric_export_interval_ms: int = 1000,
        clock_ns: Callable[[], int] = time.time_ns,
        slow_spans_per_interval: int = 5,
        trace_sample_ratio: float = 0.0,
        slow_request_threshold_ms: float = 0.0,
        max_queue_size: int = 2048,
        export_timeout_s: float = 5.0,
        record_predictions: bool = True,
        drift_rows_per_interval: int = 16,
        prometheus: ReplicaMetrics | None = None,
    ) -> None:
        if metric_export_interval_ms <= 0:
            raise ValueError(
                f"metric_export_interval_ms must be > 0, got {metric_export_interval_ms}"
            )
        if not 0.0 <= trace_sample_ratio <= 1.0:
            raise ValueError(f"trace_sample_ratio must be within [0, 1], got {trace_sample_ratio}")
        if slow_request_threshold_ms < 0:
            raise ValueError(
                f"slow_request_threshold_ms must be >= 0 (0 turns it off), "
                f"got {slow_request_threshold_ms}"
            )
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        self._clock_ns = clock_ns
        self._prometheus = prometheus
        # 0 turns the rule off: every request would be "slow" otherwise.
        self._slow_ns = int(slow_request_threshold_ms * 1e6) if slow_request_threshold_ms else -1
        self._max_queue_size = max_queue_size
        self._dropped_spans = 0
        # Same rule as the SDK's TraceIdRatioBased: the low 64 bits of the trace id
        # below a bound, so every service sampling at one ratio keeps the same traces.
        self._sample_bound = round(trace_sample_ratio * (1 << 64))
        self._slowest: SlowestPerKey[PredictObservation] = SlowestPerKey(slow_spans_per_interval)
        self._interval_s = metric_export_interval_ms / 1000.0
        # The module-level generator is the one the SDK's RandomIdGenerator uses.
        self._getrandbits = random.getrandbits
        self._resource = Resource.create(
            {SERVICE_NAME: service_name, SERVICE_INSTANCE_ID: replica_id}
        )
        self._scope = InstrumentationScope(INSTRUMENTATION_NAME)
        # shutdown_on_exit=False: the owner calls shutdown(); an atexit hook per
        # instance would keep every provider a test ever made alive until exit.
        self._tracer_provider = TracerProvider(resource=self._resource, shutdown_on_exit=False)
        processors: list[SpanProcessor] = []
        for endpoint in otlp_endpoints:
            processor = BatchSpanProcessor(
                OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=export_timeout_s),
                schedule_delay_millis=metric_export_interval_ms,
                max_queue_size=max_queue_size,
                max_export_batch_size=min(512, max_queue_size),
            )
            self._tracer_provider.add_span_processor(processor)
            processors.append(processor)
        self._span_processors = tuple(processors)
        # Deltas: the receiver only adds, and a restarted replica then never makes a
        # cumulative series go backwards.
        temporality: dict[type, AggregationTemporality] = {
            Counter: AggregationTemporality.DELTA,
            ObservableCounter: AggregationTemporality.DELTA,
            Histogram: AggregationTemporality.DELTA,
        }
        # Predict latency bypasses the SDK's per-request record (see latency_push).
        def exporters(endpoints: list[str]) -> list[OTLPMetricExporter]:
            return [
                OTLPMetricExporter(
                    endpoint=endpoint,
                    insecure=True,
                    preferred_temporality=temporality,
                    timeout=export_timeout_s,
                )
                for endpoint in endpoints
            ]

        self._latency = HistogramPush(
            self._resource, self._scope, exporters(otlp_endpoints), export_timeout_s
        )
        # Drift samples go to the control plane only (the first endpoint), counted
        # by hand as well (see latency_push).
        self._drift: HistogramPush | None = None
        if otlp_endpoints and drift_rows_per_interval > 0:
            self._drift = HistogramPush(
                self._resource, self._scope, exporters(otlp_endpoints[:1]), export_timeout_s,
                HistogramSpec(FEATURE_VALUE, "Sampled input features and outputs, for drift",
                              "1", INDEX_BOUNDS),
            )
        # Prediction records go to the control plane only (the first endpoint): they
        # feed feedback there and mean nothing to a generic collector.
        self._io: IoRecorder | None = None
        if otlp_endpoints and (record_predictions or drift_rows_per_interval > 0):
            self._io = IoRecorder(
                {SERVICE_NAME: service_name, SERVICE_INSTANCE_ID: replica_id},
                self._drift,
                otlp_endpoints[0] if record_predictions else None,
                drift_rows_per_interval=drift_rows_per_interval,
                export_timeout_s=export_timeout_s,
            )
        self._propagator = TraceContextTextMapPropagator()
        self._attribute_cache: dict[_SeriesKey, MetricAttributes] = {}
        self._closed = False
        self._stop = threading.Event()
        self._drainer = threading.Thread(
            target=self._drain_periodically, name=f"modelplane-slow-spans-{replica_id}", daemon=True
        )
        self._drainer.start()

    @property
    def tracer(self) -> Tracer:
        """A tracer on this replica's provider, for spans other than Predict's."""
        return self._tracer_provider.get_tracer(INSTRUMENTATION_NAME)

    def observe_predict(
        self, metadata: Sequence[tuple[str, str | bytes]], endpoint: str = ""
    ) -> PredictObservation:
        """A context manager observing one Predict.

        ``metadata`` is the call's invocation metadata (its ``traceparent`` /
        ``tracestate`` become the span's parent). ``endpoint`` is what the request
        asked for, so a call failing before routing is still filed under it.
        """
        return PredictObservation(self, metadata, endpoint)

    def _remote_parent(self, metadata: Sequence[tuple[str, str | bytes]]) -> SpanContext | None:
        carrier: dict[str, str] | None = None
        for key, value in metadata:
            if key in (_TRACEPARENT, _TRACESTATE):
                if carrier is None:
                    carrier = {}
                carrier[key] = value.decode("latin-1") if isinstance(value, bytes) else value
        if carrier is None or _TRACEPARENT not in carrier:
            # No caller trace: skip the propagator entirely.
            return None
        parent = get_current_span(self._propagator.extract(carrier)).get_span_context()
        if parent.trace_id == INVALID_TRACE_ID or parent.span_id == INVALID_SPAN_ID:
            return None  # a malformed traceparent starts a new trace, as the SDK would
        return parent

    def _finished(
        self, observation: PredictObservation, duration_ns: int, key: _SeriesKey
    ) -> None:
        """Exports the request's span now, keeps it as a slow candidate, or drops it."""
        if observation._status != OK or duration_ns > self._slow_ns >= 0:
            # Tail rules first: an error or a slow request is what an SRE looks for,
            # whatever the caller's sampling decision was.
            self._emit(observation)
            return
        parent = observation._parent
        if parent is not None:
            if parent.trace_flags.sampled:
                self._emit(observation)
            return
        if observation._trace_id & _LOW_64_BITS < self._sample_bound:
            self._emit(observation)
            return
        self._slowest.offer(key, duration_ns, observation)

    def _emit(self, observation: PredictObservation) -> None:
        attributes: dict[str, str | int] = {
            "rpc.system": "grpc",
            "rpc.service": RPC_SERVICE,
            "rpc.method": RPC_METHOD,
        }
        if observation._endpoint:
            attributes[ATTR_ENDPOINT] = observation._endpoint
        if observation._prediction_id:
            attributes[ATTR_MODEL] = observation._model
            attributes[ATTR_VERSION] = observation._version
            attributes[ATTR_PREDICTION_ID] = observation._prediction_id
        if observation._route_reason:
            attributes[ATTR_ROUTE_REASON] = observation._route_reason
        status = _UNSET
        if observation._status != OK:
            attributes[ATTR_STATUS] = observation._status
            status = Status(StatusCode.ERROR, f"{observation._status}: {observation._message}")
        parent = observation._parent
        context = SpanContext(
            observation._trace_id,
            observation._span_id,
            False,
            _SAMPLED,
            parent.trace_state if parent is not None else None,
        )
        span = ReadableSpan(
            PREDICT_SPAN,
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            events=observation._events,
            kind=SpanKind.SERVER,
            status=status,
            start_time=observation._start_ns,
            end_time=observation._end_ns,
            instrumentation_scope=self._scope,
        )
        self._export(span)
        timeline = observation._timeline
        if timeline is not None:
            for child in self._phase_spans(observation, context, timeline):
                self._export(child)
            # Shadow copies run after the answer: those done now are exported with
            # it, the others when they finish.
            for shadow in timeline.follow_shadows(
                lambda done: self._export(self._shadow_span(context, done))
            ):
                self._export(self._shadow_span(context, shadow))

    def _export(self, span: ReadableSpan) -> None:
        for processor in self._span_processors:
            if _queue_length(processor) >= self._max_queue_size:
                # The SDK would drop it too (and only log); counted here so the
                # loss is visible. The queue is full when an exporter is stuck.
                self._dropped_spans += 1
                continue
            processor.on_end(span)

    def _phase_spans(
        self, observation: PredictObservation, parent: SpanContext, timeline: PredictTimeline
    ) -> list[ReadableSpan]:
        """The request's phases as children of its span: routing decision, the wait
        for its version's runner (the batch queue), the model run."""
        spans: list[ReadableSpan] = []
        version: _SpanAttributes = {
            ATTR_MODEL: observation._model, ATTR_VERSION: observation._version
        }
        if timeline.routed_ns:
            spans.append(self._child(
                ROUTE_SPAN, parent, observation._start_ns, timeline.routed_ns,
                {ATTR_ENDPOINT: observation._endpoint,
                 ATTR_ROUTE_REASON: observation._route_reason, **version},
            ))
        if timeline.run_start_ns and timeline.queued_ns:
            batch: _SpanAttributes = {
                ATTR_BATCH_REQUESTS: timeline.batch_requests, ATTR_BATCH_ROWS: timeline.batch_rows
            }
            spans.append(self._child(
                QUEUE_SPAN, parent, timeline.queued_ns, timeline.run_start_ns, batch
            ))
            spans.append(self._child(
                INFERENCE_SPAN, parent, timeline.run_start_ns, timeline.run_end_ns,
                {**version, **batch},
            ))
        return spans

    def _shadow_span(self, parent: SpanContext, shadow: ShadowTiming) -> ReadableSpan:
        return self._child(
            SHADOW_SPAN, parent, shadow.start_ns, shadow.end_ns,
            {ATTR_MODEL: shadow.model, ATTR_VERSION: shadow.version, ATTR_SHADOW_OK: shadow.ok},
            Status(StatusCode.UNSET if shadow.ok else StatusCode.ERROR),
        )

    def _child(
        self,
        name: str,
        parent: SpanContext,
        start_ns: int,
        end_ns: int,
        attributes: _SpanAttributes,
        status: Status = _UNSET,
    ) -> ReadableSpan:
        return ReadableSpan(
            name,
            context=SpanContext(
                parent.trace_id, self._getrandbits(64), False, _SAMPLED, parent.trace_state
            ),
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=start_ns,
            end_time=max(end_ns, start_ns),
            instrumentation_scope=self._scope,
        )

    @property
    def dropped_spans(self) -> int:
        """Spans not exported because an endpoint's queue was full (since start)."""
        return self._dropped_spans

    def _drain_slowest(self) -> None:
        for observation in self._slowest.drain():
            self._emit(observation)

    def _drain_periodically(self) -> None:
        # Drained at the export cadence, so each interval's slowest requests ride
        # the same batch as that interval's metrics.
        drains = 0
        while not self._stop.wait(self._interval_s):
            drains += 1
            self._latency.collect()
            self._drain_slowest()
            self._drain_io()
            # Drift counts accumulate here and go out every DRIFT_PUSH_EVERY-th
            # interval: the control plane compares them in 10 s slots, and each push
            # costs an OTLP message of every feature's buckets.
            if self._drift is not None and drains % DRIFT_PUSH_EVERY == 0:
                self._drift.collect()

    def _drain_io(self) -> None:
        if self._io is not None:
            try:
                self._io.drain()
            except Exception:
                # The drain thread must survive anything a payload does to it.
                _log.exception("shipping prediction records / drift samples failed")

    @property
    def dropped_predictions(self) -> int:
        """Prediction records not delivered (buffer full or control plane unreachable)."""
        return self._io.dropped_predictions if self._io is not None else 0

    def _metric_attributes(self, key: _SeriesKey) -> MetricAttributes:
        """The attributes of one (endpoint, model, version, status) series, made once."""
        attributes = self._attribute_cache.get(key)
        if attributes is None:
            if len(self._attribute_cache) >= _MAX_CACHED_ATTRIBUTE_SETS:
                self._attribute_cache.clear()
            endpoint, model, version, status = key
            attributes = {
                ATTR_ENDPOINT: endpoint,
                ATTR_MODEL: model,
                ATTR_VERSION: version,
                ATTR_STATUS: status,
            }
            self._attribute_cache[key] = attributes
        return attributes

    def force_flush(self, timeout_ms: int = 10_000) -> bool:
        """Exports what is pending now; True if both signals made it in time."""
        self._drain_slowest()
        self._drain_io()
        latency = self._latency.flush(timeout_ms / 1000)
        spans = self._tracer_provider.force_flush(timeout_ms)
        drift = self._drift.flush(timeout_ms / 1000) if self._drift is not None else True
        return latency and bool(spans) and drift

    def shutdown(self) -> None:
        """Flushes and stops both providers; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._drainer.join()
        self._drain_slowest()
        self._drain_io()
        if self._io is not None:
            self._io.close()
        self._latency.shutdown()
        if self._drift is not None:
            self._drift.shutdown()
        self._tracer_provider.shutdown()

    def __enter__(self) -> DataPlaneTelemetry:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()


def _exception_event(error: BaseException, timestamp_ns: int) -> Event:
    """The semantic-convention ``exception`` event; only for INTERNAL, i.e. bugs."""
    return Event(
        "exception",
        {
            "exception.type": f"{type(error).__module__}.{type(error).__qualname__}",
            "exception.message": str(error),
            "exception.stacktrace": "".join(
                tb_format(type(error), error, error.__traceback__)
            ),
        },
        timestamp=timestamp_ns,
    )


def _queue_length(processor: SpanProcessor) -> int:
    """Spans waiting in a BatchSpanProcessor's bounded queue (0 if it has none).

    The SDK keeps the queue private; reading its length is a cheap O(1) ``len``.
    """
    batch = getattr(processor, "_batch_processor", None)
    queue = getattr(batch, "_queue", None)
    return len(queue) if queue is not None else 0
