"""Drift and feedback state in Redis, so a control-plane restart keeps baselines and
loses at most what arrived since the last flush (seconds, well inside a minute).

Layout, under the key prefix (``<series>`` is JSON ``[endpoint, model, version]``)::

    {prefix}:tel:drift:series                  set of <series> with a baseline
    {prefix}:tel:drift:base:<series>           hash feature -> baseline (no TTL)
    {prefix}:tel:drift:slots:<series>:<b>      hash [feature, epoch] -> recent counts
    {prefix}:tel:quality:series                set of <series> with feedback
    {prefix}:tel:quality:slots:<series>:<b>    hash second -> joined sums

``<b>`` is the time divided by ``BUCKET_SECONDS``: a windowed hash holds ten
minutes at most and expires an hour after its last write, so no key grows past
the horizon however long the control plane runs, without a sweep. Baselines
have no TTL: they are the reference drift is measured against and cannot be
rebuilt, so they stay until their version is deleted from the registry
(checked every ``check_every`` flushes).

A flush writes what changed since the previous one (the trackers keep dirty
marks), whole: a value is the full state of its slot or baseline, so a rewrite
is harmless and a failed write is simply retried by the next flush. A baseline
that fills wakes the flush loop at once, so a captured baseline is not left in
memory only. Malformed stored values are skipped with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from modelplane.telemetry.aggregator import HORIZON_SECONDS, SLOT_SECONDS
from modelplane.telemetry.drift import (
    DRIFT_SLOT_SECONDS,
    BaselineState,
    DriftSlotState,
    DriftTracker,
)
from modelplane.telemetry.feedback import FeedbackJoiner, QualitySlotState
from modelplane.telemetry.flush_loop import FlushLoop
from modelplane.telemetry.quality_codec import (
    decode_baseline,
    decode_drift_slot,
    decode_quality_slot,
    decode_series,
    encode_baseline,
    encode_drift_slot,
    encode_quality_slot,
    encode_series,
    encode_slot_field,
)

log = logging.getLogger(__name__)

BUCKET_SECONDS = 600
# Windowed keys outlive their newest entry by the horizon (plus the slot being filled).
WINDOW_TTL_SECONDS = HORIZON_SECONDS + 2 * SLOT_SECONDS
# Bad stored values logged one by one before only a count is.
_WARN_EACH = 5


class QualityPersistence:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        drift: DriftTracker | None,
        feedback: FeedbackJoiner | None,
        version_exists: Callable[[str, int], bool] | None = None,
        clock: Callable[[], float] = time.time,
        check_every: int = 6,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._drift = drift
        self._feedback = feedback
        self._version_exists = version_exists
        self._clock = clock
        self._check_every = max(check_every, 1)
        self._flushes = 0
        self._flusher = FlushLoop(
            self._flush_and_tidy, "modelplane-quality-flush", "drift/feedback"
        )
        if drift is not None:
            drift.on_baseline_captured(self._flusher.wake)

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, "tel", *parts))

    # ------------------------------------------------------------------- flush

    def flush(self) -> int:
        """Writes what changed since the last flush; returns the values written.

        On a Redis error the changes are handed back to the trackers (the next
        flush writes them) and the error is raised.
        """
        baselines, slots = self._drift.take_dirty() if self._drift is not None else ([], [])
        seconds: list[QualitySlotState] = (
            self._feedback.take_dirty() if self._feedback is not None else []
        )
        if not (baselines or slots or seconds):
            return 0
        pipe = self._redis.pipeline(transaction=False)
        drift_series: set[str] = set()
        for b in baselines:
            series = encode_series(b.endpoint, b.model, b.version)
            pipe.hset(self._key("drift", "base", series), b.feature, encode_baseline(b))
            drift_series.add(series)
        for series in drift_series:
            pipe.sadd(self._key("drift", "series"), series)
        windowed: set[str] = set()
        for s in slots:
            series = encode_series(s.endpoint, s.model, s.version)
            key = self._key(
                "drift", "slots", series, str(s.epoch * DRIFT_SLOT_SECONDS // BUCKET_SECONDS)
            )
            pipe.hset(key, encode_slot_field(s.feature, s.epoch), encode_drift_slot(s))
            windowed.add(key)
        quality_series: set[str] = set()
        for q in seconds:
            series = encode_series(q.endpoint, q.model, q.version)
            key = self._key("quality", "slots", series, str(q.second // BUCKET_SECONDS))
            pipe.hset(key, str(q.second), encode_quality_slot(q))
            windowed.add(key)
            quality_series.add(series)
        if quality_series:
            pipe.sadd(self._key("quality", "series"), *quality_series)
            windowed.add(self._key("quality", "series"))
        for key in windowed:
            pipe.expire(key, WINDOW_TTL_SECONDS)
        try:
            pipe.execute()
        except redis.RedisError:
            if self._drift is not None:
                self._drift.mark_dirty(baselines, slots)
            if self._feedback is not None:
                self._feedback.mark_dirty(seconds)
            raise
        return len(baselines) + len(slots) + len(seconds)

    def forget_deleted_versions(self) -> int:
        """Drops the drift state (baselines included) of versions the registry no
        longer has; returns how many (endpoint, model, version) were dropped."""
        if self._drift is None or self._version_exists is None:
            return 0
        dropped = 0
        for model, version in sorted({(k[1], k[2]) for k in self._drift.versions()}):
            if self._version_exists(model, version):
                continue
            for endpoint, _, _ in self._drift.forget(model, version):
                series = encode_series(endpoint, model, version)
                pipe = self._redis.pipeline(transaction=False)
                pipe.delete(self._key("drift", "base", series))
                pipe.srem(self._key("drift", "series"), series)
                pipe.execute()
                dropped += 1
                log.info("drift baselines of %s:%s on '%s' dropped: version deleted",
                         model, version, endpoint)
        return dropped

    # ----------------------------------------------------------------- restore

    def restore(self) -> int:
        """Loads what Redis holds into the trackers; returns the values restored.

        Malformed values (and keys of the wrong type) are skipped with a warning:
        a bad entry costs that entry, never the start of the control plane.
        """
        bad = _BadEntries()
        restored = 0
        now = self._clock()
        if self._drift is not None:
            baselines: list[BaselineState] = []
            slots: list[DriftSlotState] = []
            buckets = _buckets(now - self._drift.window_s - DRIFT_SLOT_SECONDS, now)
            for series, (endpoint, model, version) in self._series("drift", bad):
                stored = self._hgetall(self._key("drift", "base", series), bad)
                if not stored:
                    self._redis.srem(self._key("drift", "series"), series)
                    continue
                for feature, value in stored.items():
                    try:
                        baselines.append(decode_baseline(endpoint, model, version, feature, value))
                    except ValueError as error:
                        bad.add(f"drift baseline {series} {feature!r}", error)
                for bucket in buckets:
                    key = self._key("drift", "slots", series, str(bucket))
                    for field, value in self._hgetall(key, bad).items():
                        try:
                            slots.append(decode_drift_slot(endpoint, model, version, field, value))
                        except ValueError as error:
                            bad.add(f"drift slot {key} {field!r}", error)
            restored += self._drift.restore(baselines, slots)
        if self._feedback is not None:
            seconds: list[QualitySlotState] = []
            buckets = _buckets(now - HORIZON_SECONDS, now)
            for series, (endpoint, model, version) in self._series("quality", bad):
                for bucket in buckets:
                    key = self._key("quality", "slots", series, str(bucket))
                    for field, value in self._hgetall(key, bad).items():
                        try:
                            seconds.append(
                                decode_quality_slot(endpoint, model, version, field, value)
                            )
                        except ValueError as error:
                            bad.add(f"feedback second {key} {field!r}", error)
            restored += self._feedback.restore(seconds)
        bad.summarise()
        return restored

    def _series(self, kind: str, bad: _BadEntries) -> Iterator[tuple[str, tuple[str, str, int]]]:
        key = self._key(kind, "series")
        try:
            members = self._redis.smembers(key)
        except redis.ResponseError as error:
            bad.add(key, error)
            # Unreadable, and every later write to it would fail too: start it afresh.
            self._redis.delete(key)
            return
        for raw in members:
            series = _text(raw)
            try:
                yield series, decode_series(series)
            except ValueError as error:
                bad.add(f"{key} member {series[:80]!r}", error)
                self._redis.srem(key, raw)

    def _hgetall(self, key: str, bad: _BadEntries) -> dict[str, str]:
        try:
            stored: dict[Any, Any] = self._redis.hgetall(key)
        except redis.ResponseError as error:  # e.g. WRONGTYPE: not a hash
            bad.add(key, error)
            # Unreadable, and every later write to it would fail too: start it afresh.
            self._redis.delete(key)
            return {}
        result: dict[str, str] = {}
        for field, value in stored.items():
            try:
                result[_text(field)] = _text(value)
            except UnicodeDecodeError as error:
                bad.add(f"{key} field", error)
        return result

    # -------------------------------------------------------------------- loop

    def start(self, interval_s: float) -> None:
        """Flushes every ``interval_s`` (and when a baseline fills) until ``stop``."""
        self._flusher.start(interval_s)

    def _flush_and_tidy(self) -> None:
        self.flush()
        self._flushes += 1
        if self._flushes % self._check_every == 0:
            self.forget_deleted_versions()

    def stop(self) -> None:
        """Stops the loop and writes one last time (best effort)."""
        self._flusher.stop()


class _BadEntries:
    """Counts malformed stored values; logs the first few, then a total."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, where: str, error: Exception) -> None:
        self.count += 1
        if self.count <= _WARN_EACH:
            log.warning("telemetry state in Redis ignored, malformed: %s: %s", where, error)

    def summarise(self) -> None:
        if self.count > _WARN_EACH:
            log.warning("telemetry state in Redis: %d malformed values ignored in all",
                        self.count)


def _buckets(start_s: float, end_s: float) -> range:
    return range(int(start_s // BUCKET_SECONDS), int(end_s // BUCKET_SECONDS) + 1)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
