"""Scale / PutServingGroup / GetStatus over real gRPC and a real Redis.

The engine behind them is a recording deployer with a fixed amount of free CPU
(the Ray Serve one is exercised in tests/e2e/test_scaling.py): what is checked
here is the mapping of requests onto groups, the refusals and their messages,
and that a refused change leaves the replicas and the stored group untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest

from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.scaling import ScalingManager
from modelplane.control.scaling_servicer import add_scaling_service
from modelplane.domain.models import DataType, RouteTarget, Signature, TensorSpec
from modelplane.domain.scaling import ServingGroup
from modelplane.registry.redis_connect import connect
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.serving_groups import ServingGroupStore
from modelplane.v1 import scaling_pb2, scaling_pb2_grpc

pytestmark = pytest.mark.integration

SIG = Signature(
    inputs=(TensorSpec("x", DataType.FLOAT32, (-1, 16)),),
    outputs=(TensorSpec("y", DataType.FLOAT32, (-1, 4)),),
)


@dataclass
class RecordingDeployer:
    free_cpu: float
    per_cpu: float = 0.5
    running: dict[str, int] = field(default_factory=dict)
    deployed: list[ServingGroup] = field(default_factory=list)

    def deploy(self, group: ServingGroup) -> None:
        self.deployed.append(group)
        count = group.min_replicas
        self.free_cpu -= (count - self.running.get(group.name, 0)) * self.per_cpu
        self.running[group.name] = count

    def running_replicas(self, group: ServingGroup) -> int:
        return self.running.get(group.name, 0)

    def per_replica(self) -> dict[str, float]:
        return {"CPU": self.per_cpu}

    def available(self) -> dict[str, float]:
        return {"CPU": self.free_cpu}

    def application_status(self, group: ServingGroup) -> str:
        return "RUNNING" if group.name in self.running else "NOT_DEPLOYED"


@dataclass
class Plane:
    stub: scaling_pb2_grpc.ScalingServiceStub
    manager: ScalingManager
    deployer: RecordingDeployer
    directory: ReplicaDirectory
    store: RedisRegistryStore


@pytest.fixture()
def plane(redis_url: str, key_prefix: str) -> Iterator[Plane]:
    client = connect(redis_url)
    store = RedisRegistryStore(client, key_prefix)
    store.create_model("m", "", 0)
    store.add_version("m", "a" * 64, 1, SIG, "", 0)
    for endpoint in ("fraud", "churn"):
        store.set_route(endpoint, (RouteTarget("m", 100, version=1),), 0, 0)
    directory = ReplicaDirectory(client, key_prefix)
    manager = ScalingManager(ServingGroupStore(client, key_prefix), directory, store)
    deployer = RecordingDeployer(free_cpu=1.5)
    deployer.running["default"] = 1
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2), interceptors=[ErrorInterceptor()]
    )
    add_scaling_service(server, manager)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Plane(
            scaling_pb2_grpc.ScalingServiceStub(channel), manager, deployer, directory, store
        )
    finally:
        channel.close()
        server.stop(0)
        client.close()


def attach(plane: Plane) -> None:
    plane.manager.attach(plane.deployer, ServingGroup("default", 7001, replicas=1))


def refused(call: object, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    assert info.value.code() == code
    assert message in (info.value.details() or "")


def test_without_a_data_plane_scaling_is_refused(plane: Plane) -> None:
    refused(
        lambda: plane.stub.Scale(scaling_pb2.ScaleRequest(endpoint="fraud", replicas=2)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "this control plane runs no data plane",
    )


def test_scale_an_endpoint_maps_onto_its_group(plane: Plane) -> None:
    attach(plane)
    group = plane.stub.Scale(scaling_pb2.ScaleRequest(endpoint="fraud", replicas=3))
    assert (group.name, group.replicas, group.inference_port) == ("default", 3, 7001)
    assert plane.deployer.deployed[-1] == ServingGroup("default", 7001, replicas=3)
    auto = plane.stub.Scale(
        scaling_pb2.ScaleRequest(
            group="default",
            autoscaling=scaling_pb2.Autoscaling(min_replicas=1, max_replicas=4),
        )
    )
    assert auto.HasField("autoscaling")
    assert (auto.autoscaling.min_replicas, auto.autoscaling.max_replicas) == (1, 4)
    assert auto.autoscaling.target_ongoing_requests == 2.0


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            scaling_pb2.ScaleRequest(endpoint="fraud", replicas=-1),
            "replicas: expected 0 or more, got -1",
        ),
        (
            scaling_pb2.ScaleRequest(
                endpoint="fraud",
                autoscaling=scaling_pb2.Autoscaling(min_replicas=3, max_replicas=2),
            ),
            "autoscaling: min_replicas (3) must not exceed max_replicas (2)",
        ),
        (
            scaling_pb2.ScaleRequest(group="gpu", replicas=1),
            "unknown serving group 'gpu' (known: default)",
        ),
        (
            scaling_pb2.ScaleRequest(group="Bad_Name", replicas=1),
            "group: expected lowercase letters",
        ),
        (
            scaling_pb2.ScaleRequest(endpoint="fraud"),
            "give either replicas or an autoscaling range",
        ),
        (
            scaling_pb2.ScaleRequest(endpoint="fraud", group="default", replicas=1),
            "name exactly one of endpoint and group",
        ),
    ],
)
def test_bad_scale_requests_are_invalid_arguments(
    plane: Plane, request_: scaling_pb2.ScaleRequest, message: str
) -> None:
    attach(plane)
    refused(lambda: plane.stub.Scale(request_), grpc.StatusCode.INVALID_ARGUMENT, message)
    assert plane.deployer.deployed == []


def test_unknown_endpoint_is_not_found(plane: Plane) -> None:
    attach(plane)
    refused(
        lambda: plane.stub.Scale(scaling_pb2.ScaleRequest(endpoint="ghost", replicas=1)),
        grpc.StatusCode.NOT_FOUND,
        "ghost",
    )


def test_beyond_the_cluster_is_refused_and_changes_nothing(plane: Plane) -> None:
    attach(plane)
    refused(
        lambda: plane.stub.Scale(scaling_pb2.ScaleRequest(endpoint="fraud", replicas=5)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "group 'default' cannot grow from 1 to 5 replicas: needs 2 CPU for 4 more replica(s) "
        "(0.5 each), 1.5 available. The 1 current replica(s) are untouched",
    )
    assert plane.deployer.deployed == []
    assert plane.deployer.running == {"default": 1}
    (entry,) = plane.stub.GetStatus(scaling_pb2.GetStatusRequest()).groups
    assert entry.group.replicas == 1
    # An autoscaling range is checked against its minimum only.
    group = plane.stub.Scale(
        scaling_pb2.ScaleRequest(
            endpoint="fraud", autoscaling=scaling_pb2.Autoscaling(min_replicas=2, max_replicas=50)
        )
    )
    assert group.autoscaling.max_replicas == 50


def test_groups_get_their_own_port_and_endpoints(plane: Plane) -> None:
    attach(plane)
    group = plane.stub.PutServingGroup(
        scaling_pb2.PutServingGroupRequest(name="batch", inference_port=7002, endpoints=["churn"])
    )
    assert (group.name, group.inference_port, list(group.endpoints)) == ("batch", 7002, ["churn"])
    assert plane.deployer.running["batch"] == 1
    scaled = plane.stub.Scale(scaling_pb2.ScaleRequest(endpoint="churn", replicas=2))
    assert scaled.name == "batch"
    assert plane.deployer.running == {"default": 1, "batch": 2}
    refused(
        lambda: plane.stub.PutServingGroup(
            scaling_pb2.PutServingGroupRequest(name="other", inference_port=7002)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inference_port: 7002 already serves group 'batch'",
    )
    refused(
        lambda: plane.stub.PutServingGroup(scaling_pb2.PutServingGroupRequest(name="other")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inference_port: a new group ('other') needs a port",
    )
    # Moving the endpoint back to the default group.
    plane.stub.PutServingGroup(
        scaling_pb2.PutServingGroupRequest(name="default", endpoints=["churn"])
    )
    assert (
        plane.stub.Scale(scaling_pb2.ScaleRequest(endpoint="churn", replicas=1)).name == "default"
    )


def test_status_shows_each_groups_replicas_from_their_heartbeats(plane: Plane) -> None:
    attach(plane)
    plane.stub.PutServingGroup(
        scaling_pb2.PutServingGroupRequest(name="batch", inference_port=7002, endpoints=["churn"])
    )
    generation = plane.store.current_generation()
    plane.directory.heartbeat("r1", generation, "10.0.0.1:7001", "node-a", ["m:1"])
    plane.directory.heartbeat("r2", generation - 1, "10.0.0.2:7001", "node-b", [])
    plane.directory.heartbeat("r3", generation, "10.0.0.2:7002", "node-b", ["m:1"])
    status = plane.stub.GetStatus(scaling_pb2.GetStatusRequest())
    assert status.generation == generation
    by_group = {g.group.name: g for g in status.groups}
    assert set(by_group) == {"default", "batch"}
    assert by_group["default"].serve_status == "RUNNING"
    default = {
        (r.replica_id, r.node, r.ready, tuple(r.loaded)) for r in by_group["default"].replicas
    }
    assert default == {("r1", "node-a", True, ("m:1",)), ("r2", "node-b", False, ())}
    assert [(r.replica_id, r.address) for r in by_group["batch"].replicas] == [
        ("r3", "10.0.0.2:7002")
    ]
    assert list(by_group["batch"].group.endpoints) == ["churn"]
