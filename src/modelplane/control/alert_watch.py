"""Audits alerts as they start, so webhooks hear of them (alert.drift, alert.accuracy, …).

``ListAlerts`` computes alerts on demand; nobody is told unless someone asks.
This watcher evaluates the same signals every ``interval_s`` on a daemon thread
and writes one audit event (``alert_<kind>``) when an alert *starts*: an alert
is identified by (kind, endpoint, model, version) and, while it stays active,
is not audited again; once it has cleared, its return is a new alert.

Signals:

- latency and error-rate regressions (``telemetry/regressions.py``);
- drift: the worst feature's PSI above the line;
- accuracy: with labels from feedback, a version whose accuracy over the window
  is ``accuracy_max_drop`` below its endpoint's most-labelled version, both
  sides with at least ``min_feedback`` labels.

``telemetry/alerts.py`` computes them, for ``ListAlerts`` as well.

Which alerts are active is kept in Redis (``<prefix>:alerts:active``) when the
watcher is given a client, so a restarted control plane does not audit an alert
that was already active again; without one it lives in this process's memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import redis

from modelplane.domain.errors import ModelplaneError
from modelplane.domain.stats import Alert
from modelplane.registry.audit_context import acting_as
from modelplane.registry.use_cases import Registry
from modelplane.telemetry.aggregator import StatsAggregator
from modelplane.telemetry.alerts import AccuracyPolicy, current_alerts
from modelplane.telemetry.drift import DriftTracker
from modelplane.telemetry.feedback import FeedbackJoiner
from modelplane.telemetry.regressions import RegressionPolicy

log = logging.getLogger(__name__)

ACTOR = "alerts"
AlertKey = tuple[str, str, str, int]


class AlertWatcher:
    def __init__(
        self,
        registry: Registry,
        aggregator: StatsAggregator,
        drift: DriftTracker | None = None,
        feedback: FeedbackJoiner | None = None,
        policy: RegressionPolicy | None = None,
        accuracy: AccuracyPolicy | None = None,
        clock: Callable[[], float] = time.time,
        redis_client: redis.Redis | None = None,
        key_prefix: str = "",
    ) -> None:
        self._registry = registry
        self._aggregator = aggregator
        self._drift = drift
        self._feedback = feedback
        self._policy = policy or RegressionPolicy()
        self._accuracy = accuracy or AccuracyPolicy()
        self._clock = clock
        self._redis = redis_client
        self._active_key = f"{key_prefix}:alerts:active"
        self._active: set[AlertKey] | None = None if redis_client is not None else set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def evaluate(self) -> list[Alert]:
        """Every alert active now: what ``ListAlerts`` lists for the same window."""
        return current_alerts(
            self._aggregator, self._policy, self._clock,
            drift=self._drift, feedback=self._feedback, accuracy=self._accuracy,
        )

    def tick(self) -> list[Alert]:
        """Evaluates once and audits the alerts that started; returns those."""
        alerts = self.evaluate()
        active = self._load_active()
        current = {(a.kind, a.endpoint, a.model, a.version): a for a in alerts}
        started = [alert for key, alert in sorted(current.items()) if key not in active]
        audited = active & set(current)
        for alert in started:
            key = (alert.kind, alert.endpoint, alert.model, alert.version)
            try:
                self._audit(alert)
            except (ModelplaneError, redis.RedisError) as error:
                # Not marked active: the next tick tries again.
                log.warning("alert %s on %s: could not audit it: %s", alert.kind,
                            alert.endpoint, error)
                continue
            audited.add(key)
        self._save_active(audited, previous=active)
        return started

    def _load_active(self) -> set[AlertKey]:
        if self._active is not None:
            return set(self._active)
        assert self._redis is not None
        active: set[AlertKey] = set()
        for member in self._redis.smembers(self._active_key):
            try:
                kind, endpoint, model, version = json.loads(member)
                active.add((str(kind), str(endpoint), str(model), int(version)))
            except (ValueError, TypeError):
                log.warning("alerts: ignoring a malformed active-alert entry %r", member)
        return active

    def _save_active(self, active: set[AlertKey], previous: set[AlertKey]) -> None:
        if self._redis is None:
            self._active = active
            return
        if active == previous:
            return
        members = [json.dumps(list(key)) for key in sorted(active)]
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._active_key)
            if members:
                pipe.sadd(self._active_key, *members)
            pipe.execute()

    def _audit(self, alert: Alert) -> None:
        detail: dict[str, object] = {
            "kind": alert.kind,
            "version": alert.version,
            "message": alert.message,
            "observed": alert.observed,
            "threshold": alert.threshold,
        }
        with acting_as(ACTOR, alert.message):
            self._registry.record_event(
                f"alert_{alert.kind}",
                f"endpoint/{alert.endpoint}/model/{alert.model}/version/{alert.version}",
                model=alert.model,
                endpoint=alert.endpoint,
                detail=detail,
            )
        log.info("alert started: %s on %s (%s:%d): %s", alert.kind, alert.endpoint,
                 alert.model, alert.version, alert.message)

    # ----------------------------------------------------------------- the loop

    def start(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name="modelplane-alerts", daemon=True
        )
        self._thread.start()

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.tick()
            except Exception:
                # One bad evaluation must not end the watching.
                log.exception("alerts: evaluation failed; retrying next tick")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
