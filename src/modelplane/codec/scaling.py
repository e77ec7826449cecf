"""Scaling messages <-> domain objects."""

from __future__ import annotations

from modelplane.domain.scaling import DEFAULT_TARGET_ONGOING_REQUESTS, Autoscaling, ServingGroup
from modelplane.v1 import scaling_pb2


def autoscaling_from_proto(message: scaling_pb2.Autoscaling) -> Autoscaling:
    return Autoscaling(
        min_replicas=message.min_replicas,
        max_replicas=message.max_replicas,
        target_ongoing_requests=message.target_ongoing_requests
        or DEFAULT_TARGET_ONGOING_REQUESTS,
    )


def group_to_proto(group: ServingGroup, application: str = "") -> scaling_pb2.ServingGroup:
    message = scaling_pb2.ServingGroup(
        name=group.name,
        inference_port=group.inference_port,
        replicas=group.replicas,
        endpoints=list(group.endpoints),
        application=application,
    )
    if group.autoscaling is not None:
        message.autoscaling.CopyFrom(
            scaling_pb2.Autoscaling(
                min_replicas=group.autoscaling.min_replicas,
                max_replicas=group.autoscaling.max_replicas,
                target_ongoing_requests=group.autoscaling.target_ongoing_requests,
            )
        )
    return message

