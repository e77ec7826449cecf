"""RolloutService: start, inspect, promote and abort SLO-gated rollouts."""

from __future__ import annotations

import grpc

from modelplane.codec.rollout import gates_from_proto, rollout_to_proto
from modelplane.control.rollouts import RolloutManager
from modelplane.domain.errors import InvalidArgument
from modelplane.v1 import rollout_pb2, rollout_pb2_grpc


class RolloutServicer(rollout_pb2_grpc.RolloutServiceServicer):
    def __init__(self, manager: RolloutManager) -> None:
        self._manager = manager

    def StartRollout(
        self, request: rollout_pb2.StartRolloutRequest, context: grpc.ServicerContext
    ) -> rollout_pb2.Rollout:
        if not request.endpoint:
            raise InvalidArgument("endpoint: expected an endpoint name, got ''")
        if not request.HasField("gates"):
            raise InvalidArgument("gates: expected max_p99_ratio and max_error_rate")
        rollout = self._manager.start(
            request.endpoint,
            request.model,
            request.version,
            list(request.steps),
            request.interval_seconds,
            gates_from_proto(request.gates),
        )
        return rollout_to_proto(rollout)

    def GetRollout(
        self, request: rollout_pb2.GetRolloutRequest, context: grpc.ServicerContext
    ) -> rollout_pb2.Rollout:
        return rollout_to_proto(self._manager.get(request.endpoint))

    def PromoteRollout(
        self, request: rollout_pb2.GetRolloutRequest, context: grpc.ServicerContext
    ) -> rollout_pb2.Rollout:
        return rollout_to_proto(self._manager.promote(request.endpoint))

    def AbortRollout(
        self, request: rollout_pb2.GetRolloutRequest, context: grpc.ServicerContext
    ) -> rollout_pb2.Rollout:
        return rollout_to_proto(self._manager.abort(request.endpoint))


def add_rollout_service(server: grpc.Server, manager: RolloutManager) -> None:
    rollout_pb2_grpc.add_RolloutServiceServicer_to_server(RolloutServicer(manager), server)
