"""Rollout <-> modelplane.v1.Rollout."""

from __future__ import annotations

from modelplane.codec.rollout import gates_from_proto, gates_to_proto, rollout_to_proto
from modelplane.domain.rollouts import Rollout, RolloutEvent, RolloutGates
from modelplane.v1 import rollout_pb2


def test_gates_round_trip_and_defaults() -> None:
    gates = RolloutGates(1.2, 0.01, min_accuracy_delta=-0.01, min_requests=50)
    assert gates_from_proto(gates_to_proto(gates)) == gates
    bare = gates_from_proto(rollout_pb2.RolloutGates(max_p99_ratio=1.5, max_error_rate=0.1))
    assert bare == RolloutGates(1.5, 0.1, None, 20)


def test_rollout_to_proto_reports_the_current_weight() -> None:
    rollout = Rollout(
        endpoint="fraud", model="m", canary_version=2, stable_version=1, steps=(5, 25, 100),
        step_index=1, state="running", gates=RolloutGates(1.2, 0.01), interval_s=60.0,
        step_started_ms=1000, route_revision=7, reason="advanced",
        history=(RolloutEvent(1000, "advanced", 25, "gates held"),),
    )
    message = rollout_to_proto(rollout)
    assert (message.canary_weight, message.step_index, list(message.steps)) == (25, 1, [5, 25, 100])
    assert message.history[0].reason == "gates held"
    assert not message.gates.HasField("min_accuracy_delta")
