"""Rollout <-> modelplane.v1.Rollout, and the start request's fields."""

from __future__ import annotations

from modelplane.domain.rollouts import DEFAULT_MIN_REQUESTS, Rollout, RolloutGates
from modelplane.v1 import rollout_pb2


def gates_to_proto(gates: RolloutGates) -> rollout_pb2.RolloutGates:
    message = rollout_pb2.RolloutGates(
        max_p99_ratio=gates.max_p99_ratio,
        max_error_rate=gates.max_error_rate,
        min_requests=gates.min_requests,
    )
    if gates.min_accuracy_delta is not None:
        message.min_accuracy_delta = gates.min_accuracy_delta
    return message


def gates_from_proto(message: rollout_pb2.RolloutGates) -> RolloutGates:
    return RolloutGates(
        max_p99_ratio=message.max_p99_ratio,
        max_error_rate=message.max_error_rate,
        min_accuracy_delta=(
            message.min_accuracy_delta if message.HasField("min_accuracy_delta") else None
        ),
        min_requests=message.min_requests or DEFAULT_MIN_REQUESTS,
    )


def rollout_to_proto(rollout: Rollout) -> rollout_pb2.Rollout:
    return rollout_pb2.Rollout(
        endpoint=rollout.endpoint,
        model=rollout.model,
        canary_version=rollout.canary_version,
        stable_version=rollout.stable_version,
        steps=list(rollout.steps),
        step_index=rollout.step_index,
        canary_weight=rollout.canary_weight,
        state=rollout.state,
        gates=gates_to_proto(rollout.gates),
        interval_seconds=rollout.interval_s,
        step_started_ms=rollout.step_started_ms,
        reason=rollout.reason,
        history=[
            rollout_pb2.RolloutEvent(
                ts_ms=e.ts_ms, action=e.action, canary_weight=e.canary_weight, reason=e.reason
            )
            for e in rollout.history
        ],
    )
