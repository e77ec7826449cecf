"""SLO-gated rollouts: the control plane moves traffic to a new version by itself.

A rollout sends ``steps[0]`` percent of an endpoint's traffic to the canary and
then, every ``interval_s``, compares the canary with the stable version over the
time since the step began (read from the aggregator's 10 s slots, so the first
slot of a step may still hold a few seconds of the previous one): p99 ratio
(p90 while either version has fewer than 200 requests in the step), error rate
and (when asked and known) accuracy delta. While every gate holds
the weight advances to the next step; reaching 100 promotes the canary. As soon
as a gate fails (with at least ``min_requests`` canary requests in the step,
mid-step included) all traffic goes back to the stable version.

Every weight change goes through ``Registry.set_route`` with the route revision
the rollout last wrote (compare-and-set), under the audit identity ``rollout``
with the step and its reason, so the audit trail tells the whole story; each
transition is also audited as ``rollout_<action>`` (started, advanced, promoted,
rolled_back, aborted), which webhooks deliver as rollout.advanced or
rollout.rolled_back. If
someone else changed the route in between, the rollout stops (aborted) instead
of overwriting their change.

State lives in Redis (one JSON document per endpoint) and is written after each
transition, so a restarted control plane resumes every running rollout where it
was, its step clock included.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from modelplane.domain.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    ModelplaneError,
    NotFound,
)
from modelplane.domain.models import Route, RouteTarget
from modelplane.domain.rollouts import (
    ABORTED,
    PROMOTED,
    ROLLED_BACK,
    RUNNING,
    Rollout,
    RolloutEvent,
    RolloutGates,
)
from modelplane.domain.stats import VersionStatsRecord, tail_latency, tail_note
from modelplane.registry.audit_context import acting_as
from modelplane.registry.route_plan import unservable
from modelplane.registry.use_cases import Registry
from modelplane.telemetry.aggregator import StatsAggregator

log = logging.getLogger(__name__)

ACTOR = "rollout"
MAX_HISTORY = 100

# (endpoint, model, version, start_s, end_s) -> accuracy over that time, or None.
AccuracyLookup = Callable[[str, str, int, float, float], "float | None"]


class RolloutManager:
    def __init__(
        self,
        registry: Registry,
        aggregator: StatsAggregator,
        client: redis.Redis,
        prefix: str,
        clock: Callable[[], float] = time.time,
        accuracy: AccuracyLookup | None = None,
    ) -> None:
        self._registry = registry
        self._aggregator = aggregator
        self._redis = client
        self._prefix = prefix
        self._clock = clock
        self._accuracy = accuracy
        # One transition at a time: the tick thread and the RPCs both move rollouts.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ storage

    def _key(self, endpoint: str) -> str:
        return f"{self._prefix}:rollout:{endpoint}"

    @property
    def _running_key(self) -> str:
        return f"{self._prefix}:rollouts:running"

    def _save(self, rollout: Rollout) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._key(rollout.endpoint), json.dumps(_to_json(rollout)))
        if rollout.state == RUNNING:
            pipe.sadd(self._running_key, rollout.endpoint)
        else:
            pipe.srem(self._running_key, rollout.endpoint)
        pipe.execute()

    def _load(self, endpoint: str) -> Rollout | None:
        raw: Any = self._redis.get(self._key(endpoint))
        if raw is None:
            return None
        return _from_json(json.loads(raw))

    def get(self, endpoint: str) -> Rollout:
        rollout = self._load(endpoint)
        if rollout is None:
            raise NotFound(f"endpoint: no rollout for '{endpoint}'")
        return rollout

    def running(self) -> list[str]:
        members: Any = self._redis.smembers(self._running_key)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    # ------------------------------------------------------------------ commands

    def start(
        self,
        endpoint: str,
        model: str,
        version: int,
        steps: Sequence[int],
        interval_s: float,
        gates: RolloutGates,
    ) -> Rollout:
        checked_steps = validate_steps(steps)
        if interval_s <= 0:
            raise InvalidArgument(f"interval_seconds: expected > 0, got {interval_s}")
        validate_gates(gates)
        with self._lock:
            current = self._load(endpoint)
            if current is not None and current.state == RUNNING:
                raise FailedPrecondition(
                    f"endpoint: '{endpoint}' already has a running rollout to "
                    f"{current.model}:{current.canary_version}; promote or abort it first"
                )
            route = self._registry.get_route(endpoint)
            stable = self._stable_target(route)
            model = model or stable.model
            if model != stable.model:
                raise InvalidArgument(
                    f"model: expected the endpoint's model '{stable.model}', got '{model}'"
                )
            stable_version = self._version_of(stable)
            if version == stable_version:
                raise InvalidArgument(
                    f"version: {model}:{version} already serves '{endpoint}'; pick another"
                )
            canary = self._registry.get_version(model, version)
            if not canary.servable:
                raise FailedPrecondition(f"version: {unservable(canary)}")
            now_ms = self._now_ms()
            rollout = Rollout(
                endpoint=endpoint,
                model=model,
                canary_version=version,
                stable_version=stable_version,
                steps=checked_steps,
                step_index=0,
                state=RUNNING,
                gates=gates,
                interval_s=interval_s,
                step_started_ms=now_ms,
                route_revision=route.revision,
            )
            reason = (
                f"rollout started: {model}:{version} at {checked_steps[0]}% "
                f"(stable {model}:{stable_version})"
            )
            return self._move(rollout, 0, RUNNING, "started", reason)

    def promote(self, endpoint: str) -> Rollout:
        with self._lock:
            rollout = self._running(endpoint)
            return self._move(
                rollout, len(rollout.steps) - 1, PROMOTED, "promoted",
                f"promoted by hand: {rollout.model}:{rollout.canary_version} takes 100%",
            )

    def abort(self, endpoint: str) -> Rollout:
        with self._lock:
            rollout = self._running(endpoint)
            return self._move(
                rollout, rollout.step_index, ABORTED, "aborted",
                f"aborted by hand: back to {rollout.model}:{rollout.stable_version}",
            )

    def _running(self, endpoint: str) -> Rollout:
        rollout = self.get(endpoint)
        if rollout.state != RUNNING:
            raise FailedPrecondition(
                f"endpoint: the rollout on '{endpoint}' is {rollout.state}, not running"
            )
        return rollout

    # --------------------------------------------------------------------- gates

    def tick(self) -> None:
        """Judges every running rollout once; called by the loop, tests call it directly."""
        for endpoint in self.running():
            try:
                with self._lock:
                    rollout = self._load(endpoint)
                    if rollout is not None and rollout.state == RUNNING:
                        self._judge(rollout)
            except Exception:
                # One broken rollout must not stop the others from being judged.
                log.exception("rollout on %s: judging failed; retrying next tick", endpoint)

    def _judge(self, rollout: Rollout) -> None:
        now = self._clock()
        started = rollout.step_started_ms / 1000.0
        records = self._aggregator.window_between(rollout.endpoint, started, now)
        canary = _find(records, rollout.model, rollout.canary_version)
        stable = _find(records, rollout.model, rollout.stable_version)
        gates = rollout.gates
        if canary is None or canary.window_request_count < gates.min_requests:
            return  # not enough evidence yet, whatever the clock says
        failure = self._failed_gate(rollout, canary, stable, started, now)
        if failure:
            self._move(
                rollout, rollout.step_index, ROLLED_BACK, "rolled_back",
                f"rolled back at {rollout.canary_weight}%: {failure}",
            )
            return
        if now - started < rollout.interval_s:
            return
        summary = _summary(canary, stable)
        next_index = rollout.step_index + 1
        if rollout.steps[next_index] >= 100:
            self._move(
                rollout, next_index, PROMOTED, "promoted",
                f"promoted: gates held at {rollout.canary_weight}% ({summary})",
            )
        else:
            self._move(
                rollout, next_index, RUNNING, "advanced",
                f"advanced to {rollout.steps[next_index]}%: gates held at "
                f"{rollout.canary_weight}% ({summary})",
            )

    def _failed_gate(
        self,
        rollout: Rollout,
        canary: VersionStatsRecord,
        stable: VersionStatsRecord | None,
        start_s: float,
        end_s: float,
    ) -> str:
        gates = rollout.gates
        rate = canary.window_error_count / canary.window_request_count
        if rate > gates.max_error_rate:
            return f"canary error rate {rate:.2%} > {gates.max_error_rate:.2%}"
        if stable is not None and stable.window_request_count >= gates.min_requests:
            name, canary_ms, stable_ms = tail_latency(canary, stable)
            ratio = canary_ms / stable_ms if stable_ms > 0 else 0.0
            if ratio > gates.max_p99_ratio:
                return (
                    f"canary {name} {canary_ms:.2f} ms is {ratio:.2f}x stable {name} "
                    f"{stable_ms:.2f} ms > {gates.max_p99_ratio}x"
                    + tail_note(name, canary, stable)
                )
        if gates.min_accuracy_delta is not None and self._accuracy is not None:
            mine = self._accuracy(rollout.endpoint, rollout.model, canary.version, start_s, end_s)
            theirs = self._accuracy(
                rollout.endpoint, rollout.model, rollout.stable_version, start_s, end_s
            )
            if mine is not None and theirs is not None and mine - theirs < gates.min_accuracy_delta:
                return (
                    f"canary accuracy {mine:.3f} - stable {theirs:.3f} = {mine - theirs:+.3f} "
                    f"< {gates.min_accuracy_delta:+.3f}"
                )
        return ""

    # ---------------------------------------------------------------- transitions

    def _move(
        self, rollout: Rollout, step_index: int, state: str, action: str, reason: str
    ) -> Rollout:
        """Writes the route for the new step (CAS, audited), then the rollout state."""
        moved = dataclasses.replace(rollout, step_index=step_index, state=state, reason=reason)
        weight = moved.canary_weight
        targets = self._targets(moved, weight)
        try:
            with acting_as(ACTOR, reason):
                route = self._registry.reweight_route(
                    rollout.endpoint, targets, expected_revision=rollout.route_revision
                )
        except Aborted:
            if action == "started":
                raise  # nothing was written; the caller retries against the new route
            stopped = dataclasses.replace(
                rollout,
                state=ABORTED,
                reason="aborted: the route was changed outside the rollout; left as it is",
            )
            stopped = _with_event(stopped, self._now_ms(), "aborted", stopped.reason)
            self._save(stopped)
            self._audit(stopped, "aborted")
            if action in ("promoted", "aborted"):
                raise
            return stopped
        now_ms = self._now_ms()
        moved = dataclasses.replace(moved, route_revision=route.revision, step_started_ms=now_ms)
        moved = _with_event(moved, now_ms, action, reason)
        self._save(moved)
        self._audit(moved, action)
        log.info("rollout %s: %s", rollout.endpoint, reason)
        return moved

    def _audit(self, rollout: Rollout, action: str) -> None:
        """One audit event per transition (``rollout_<action>``), which webhooks deliver
        as rollout.advanced or rollout.rolled_back; the route write beside it is audited
        as set_route. Written after the transition, so a failure here is only logged."""
        detail: dict[str, object] = {
            "model": rollout.model,
            "canary_version": rollout.canary_version,
            "stable_version": rollout.stable_version,
            "canary_weight": rollout.canary_weight,
            "state": rollout.state,
            "step_index": rollout.step_index,
            "route_revision": rollout.route_revision,
        }
        try:
            with acting_as(ACTOR, rollout.reason):
                self._registry.record_event(
                    f"rollout_{action}",
                    f"endpoint/{rollout.endpoint}",
                    model=rollout.model,
                    endpoint=rollout.endpoint,
                    detail=detail,
                )
        except (ModelplaneError, redis.RedisError) as error:
            log.warning("rollout %s: could not audit '%s': %s", rollout.endpoint, action, error)

    @staticmethod
    def _targets(rollout: Rollout, weight: int) -> list[RouteTarget]:
        targets = []
        if weight < 100:
            targets.append(
                RouteTarget(rollout.model, 100 - weight, version=rollout.stable_version)
            )
        if weight > 0:
            targets.append(RouteTarget(rollout.model, weight, version=rollout.canary_version))
        return targets

    def _stable_target(self, route: Route) -> RouteTarget:
        live = [t for t in route.targets if t.weight > 0]
        if len(live) != 1:
            raise FailedPrecondition(
                f"endpoint: a rollout starts from one target taking all traffic; "
                f"'{route.endpoint}' has {len(live)} weighted targets"
            )
        return live[0]

    def _version_of(self, target: RouteTarget) -> int:
        if target.version is not None:
            return target.version
        assert target.alias is not None
        return self._registry.get_alias(target.model, target.alias).version

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ----------------------------------------------------------------- the loop

    def start_loop(self, tick_s: float) -> None:
        """Judges running rollouts every ``tick_s`` on a daemon thread (resumes stored ones)."""
        if tick_s <= 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s}")
        self._thread = threading.Thread(
            target=self._loop, args=(tick_s,), name="modelplane-rollouts", daemon=True
        )
        self._thread.start()

    def _loop(self, tick_s: float) -> None:
        while not self._stop.wait(tick_s):
            try:
                self.tick()
            except redis.RedisError as error:
                log.warning("rollouts: Redis unavailable (%s); retrying next tick", error)

    def stop_loop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def validate_steps(steps: Sequence[int]) -> tuple[int, ...]:
    checked = tuple(int(s) for s in steps)
    if not checked:
        raise InvalidArgument("steps: expected at least one weight, e.g. 5,25,50,100")
    if any(not 1 <= s <= 100 for s in checked):
        raise InvalidArgument(f"steps: expected weights within 1..100, got {list(checked)}")
    if any(b <= a for a, b in itertools.pairwise(checked)):
        raise InvalidArgument(f"steps: expected strictly increasing weights, got {list(checked)}")
    if checked[-1] != 100:
        raise InvalidArgument(f"steps: expected the last weight to be 100, got {checked[-1]}")
    if len(checked) == 1:
        raise InvalidArgument("steps: expected at least one weight below 100 before 100")
    return checked


def validate_gates(gates: RolloutGates) -> None:
    if gates.max_p99_ratio < 1.0:
        raise InvalidArgument(f"gates.max_p99_ratio: expected >= 1, got {gates.max_p99_ratio}")
    if not 0.0 <= gates.max_error_rate <= 1.0:
        raise InvalidArgument(
            f"gates.max_error_rate: expected within [0, 1], got {gates.max_error_rate}"
        )
    if gates.min_requests < 1:
        raise InvalidArgument(f"gates.min_requests: expected >= 1, got {gates.min_requests}")


def _find(records: list[VersionStatsRecord], model: str, version: int) -> VersionStatsRecord | None:
    for record in records:
        if record.model == model and record.version == version:
            return record
    return None


def _summary(canary: VersionStatsRecord, stable: VersionStatsRecord | None) -> str:
    text = (
        f"canary p99 {canary.p99_ms:.2f} ms, errors "
        f"{canary.window_error_count}/{canary.window_request_count}"
    )
    if stable is not None:
        text += f"; stable p99 {stable.p99_ms:.2f} ms"
    return text


def _with_event(rollout: Rollout, ts_ms: int, action: str, reason: str) -> Rollout:
    event = RolloutEvent(ts_ms, action, rollout.canary_weight, reason)
    return dataclasses.replace(rollout, history=(*rollout.history, event)[-MAX_HISTORY:])


def _to_json(rollout: Rollout) -> dict[str, Any]:
    return dataclasses.asdict(rollout)


def _from_json(data: dict[str, Any]) -> Rollout:
    gates = RolloutGates(**data.pop("gates"))
    history = tuple(RolloutEvent(**e) for e in data.pop("history"))
    steps = tuple(data.pop("steps"))
    return Rollout(gates=gates, history=history, steps=steps, **data)
