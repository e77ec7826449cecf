"""ScalingService: Scale, PutServingGroup, GetStatus."""

from __future__ import annotations

import grpc

from modelplane.codec.scaling import autoscaling_from_proto, group_to_proto
from modelplane.control.scaling import ScalingManager
from modelplane.registry.replicas import ReplicaStatus
from modelplane.v1 import scaling_pb2, scaling_pb2_grpc

SERVICE_NAME = scaling_pb2.DESCRIPTOR.services_by_name["ScalingService"].full_name


def _replica(replica: ReplicaStatus, generation: int) -> scaling_pb2.ReplicaInfo:
    return scaling_pb2.ReplicaInfo(
        replica_id=replica.replica_id,
        node=replica.node,
        address=replica.address,
        ready=replica.generation >= generation,
        generation=replica.generation,
        loaded=list(replica.loaded),
    )


class ScalingServicer(scaling_pb2_grpc.ScalingServiceServicer):
    def __init__(self, manager: ScalingManager) -> None:
        self._manager = manager

    def Scale(
        self, request: scaling_pb2.ScaleRequest, context: grpc.ServicerContext
    ) -> scaling_pb2.ServingGroup:
        mode = request.WhichOneof("mode")
        group = self._manager.scale(
            request.endpoint,
            request.group,
            replicas=request.replicas if mode == "replicas" else None,
            autoscaling=autoscaling_from_proto(request.autoscaling)
            if mode == "autoscaling"
            else None,
        )
        return group_to_proto(group, self._manager.application_of(group.name))

    def PutServingGroup(
        self, request: scaling_pb2.PutServingGroupRequest, context: grpc.ServicerContext
    ) -> scaling_pb2.ServingGroup:
        group = self._manager.put_group(
            request.name, request.inference_port, list(request.endpoints)
        )
        return group_to_proto(group, self._manager.application_of(group.name))

    def GetStatus(
        self, request: scaling_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> scaling_pb2.StatusResponse:
        status = self._manager.status()
        return scaling_pb2.StatusResponse(
            generation=status.generation,
            groups=[
                scaling_pb2.GroupStatus(
                    group=group_to_proto(g.group, g.application),
                    serve_status=g.serve_status,
                    replicas=[_replica(r, status.generation) for r in g.replicas],
                )
                for g in status.groups
            ],
        )


def add_scaling_service(server: grpc.Server, manager: ScalingManager) -> None:
    scaling_pb2_grpc.add_ScalingServiceServicer_to_server(ScalingServicer(manager), server)
