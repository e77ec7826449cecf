"""The aggregator's slots in Redis, so a control-plane restart loses at most the last minute.

Layout, under the key prefix::

    {prefix}:tel:series            set of JSON [endpoint, model, version]
    {prefix}:tel:slots:<series>    hash epoch -> JSON slot (counts, sum, requests, errors, slowest)
    {prefix}:tel:totals            hash <series> -> JSON [requests, errors]

A flush writes every slot of the last few epochs that are closed (the current one
is still filling): a slot is rewritten whole, so a late export that lands in an
already-flushed slot is picked up by the next flush, and writing twice is
harmless. Slot hashes expire an hour after their last write, like the ring.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from modelplane.telemetry.aggregator import (
    HORIZON_SECONDS,
    SLOT_SECONDS,
    SlotState,
    StatsAggregator,
)
from modelplane.telemetry.flush_loop import FlushLoop
from modelplane.telemetry.histogram import BOUNDS_S

log = logging.getLogger(__name__)

# Closed slots rewritten at each flush: exports lag by up to an export interval
# plus a retry, so the slot before last may still receive points.
_REWRITE_SLOTS = 3


class AggregatePersistence:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        aggregator: StatsAggregator,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._aggregator = aggregator
        self._clock = clock
        self._flushed_through = int(clock() // SLOT_SECONDS) - RING_LOOKBACK
        self._flusher = FlushLoop(self.flush, "modelplane-telemetry-flush", "telemetry")

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, "tel", *parts))

    def flush(self) -> int:
        """Writes the recently closed slots and the totals; returns slots written."""
        current = int(self._clock() // SLOT_SECONDS)
        first = min(self._flushed_through + 1, current - _REWRITE_SLOTS)
        states = self._aggregator.slots_between(first, current - 1)
        pipe = self._redis.pipeline(transaction=False)
        touched: set[str] = set()
        for state in states:
            series = json.dumps([state.endpoint, state.model, state.version])
            key = self._key("slots", series)
            pipe.hset(key, str(state.epoch), _encode(state))
            touched.add(series)
        for series in touched:
            pipe.sadd(self._key("series"), series)
            pipe.expire(self._key("slots", series), HORIZON_SECONDS + 2 * SLOT_SECONDS)
        totals = self._aggregator.totals()
        if totals:
            pipe.hset(
                self._key("totals"),
                mapping={json.dumps(list(k)): json.dumps(list(v)) for k, v in totals.items()},
            )
        pipe.execute()
        self._flushed_through = current - 1
        return len(states)

    def restore(self) -> int:
        """Loads what Redis holds into the aggregator; returns the slots restored.

        A malformed value (cut short, edited by hand, a key of the wrong type) is
        skipped with a warning: it costs that slot, never the control plane's start.
        """
        oldest = int((self._clock() - HORIZON_SECONDS) // SLOT_SECONDS)
        states: list[SlotState] = []
        for raw_series in self._redis.smembers(self._key("series")):
            series = _text(raw_series)
            try:
                endpoint, model, version = json.loads(series)
                key = self._key("slots", series)
                stored: dict[Any, Any] = self._redis.hgetall(key)
            except (ValueError, TypeError, redis.ResponseError) as error:
                log.warning("telemetry series %r in Redis ignored, malformed: %s", series, error)
                continue
            if not stored:
                self._redis.srem(self._key("series"), series)
                continue
            stale = []
            for raw_epoch, raw_slot in stored.items():
                try:
                    epoch = int(_text(raw_epoch))
                    if epoch < oldest:
                        stale.append(raw_epoch)
                        continue
                    states.append(_decode(endpoint, model, int(version), epoch, _text(raw_slot)))
                except (ValueError, TypeError, KeyError) as error:
                    log.warning(
                        "telemetry slot %s of %s in Redis ignored, malformed: %s",
                        _text(raw_epoch), series, error,
                    )
            if stale:
                self._redis.hdel(key, *stale)
        totals: dict[tuple[str, str, int], tuple[int, int]] = {}
        try:
            raw_totals: dict[Any, Any] = self._redis.hgetall(self._key("totals"))
        except redis.ResponseError as error:
            log.warning("telemetry totals in Redis ignored: %s", error)
            raw_totals = {}
        for raw_key, raw_value in raw_totals.items():
            try:
                endpoint, model, version = json.loads(_text(raw_key))
                requests, errors = json.loads(_text(raw_value))
                totals[(str(endpoint), str(model), int(version))] = (int(requests), int(errors))
            except (ValueError, TypeError) as error:
                log.warning("telemetry totals of %r in Redis ignored, malformed: %s",
                            _text(raw_key), error)
        restored = self._aggregator.restore(states, totals)
        # Everything restored is already in Redis: the next flush starts from now.
        self._flushed_through = int(self._clock() // SLOT_SECONDS) - 1
        return restored

    def start(self, interval_s: float) -> None:
        """Flushes every ``interval_s`` on a daemon thread until ``stop``."""
        self._flusher.start(interval_s)

    def stop(self) -> None:
        """Stops the loop and writes one last time (best effort)."""
        self._flusher.stop()


# A fresh persistence looks back over the whole horizon on its first flush, so
# slots restored from Redis or filled before the first flush are written too.
RING_LOOKBACK = HORIZON_SECONDS // SLOT_SECONDS


def _encode(state: SlotState) -> str:
    return json.dumps(
        {
            "c": list(state.counts),
            "s": state.total_sum,
            "r": state.requests,
            "e": state.errors,
            "x": [list(x) for x in state.exemplars],
        },
        separators=(",", ":"),
    )


def _decode(endpoint: str, model: str, version: int, epoch: int, text: str) -> SlotState:
    """Raises ValueError, TypeError or KeyError on a malformed slot."""
    data = json.loads(text)
    counts = tuple(int(n) for n in data["c"])
    if len(counts) != len(BOUNDS_S) + 1:
        raise ValueError(f"slot: expected {len(BOUNDS_S) + 1} counts, got {len(counts)}")
    return SlotState(
        endpoint=endpoint,
        model=model,
        version=version,
        epoch=epoch,
        counts=counts,
        total_sum=float(data["s"]),
        requests=int(data["r"]),
        errors=int(data["e"]),
        exemplars=tuple((float(d), str(t)) for d, t in data["x"]),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
