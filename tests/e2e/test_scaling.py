"""Scale and status against the real Ray Serve data plane of a whole local stack.

Scaling up: the new replica has the routed version loaded when it first reports.
A serving group: its own Serve application on its own port, answering for the
endpoints assigned to it. Beyond the cluster: refused, replicas untouched.
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
from ray import serve

from modelplane.client import ModelplaneClient, outputs_of
from modelplane.launcher import LocalStack
from modelplane.registry.embedded_redis import free_port
from modelplane.sample_models import linear_model, reference_linear
from modelplane.serving.app import app_name_for
from modelplane.v1 import scaling_pb2

pytestmark = pytest.mark.e2e

X = np.ones((2, 16), np.float32)


def group_status(client: ModelplaneClient, name: str) -> scaling_pb2.GroupStatus:
    return next(g for g in client.status().groups if g.group.name == name)


def wait_ready(client: ModelplaneClient, name: str, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entry = group_status(client, name)
        if len(entry.replicas) == count and all(r.ready for r in entry.replicas):
            return
        time.sleep(0.2)
    raise AssertionError(f"group {name}: wanted {count} ready replicas, have {entry.replicas}")


def test_scale_up_and_down_with_versions_loaded(
    stack: LocalStack, client: ModelplaneClient
) -> None:
    version = client.register("scaled", linear_model(seed=11))
    client.set_route("scaled-endpoint", [("scaled", version.version, 100)])
    key = f"scaled:{version.version}"
    wait_ready(client, "default", 1)
    (original,) = [r.replica_id for r in group_status(client, "default").replicas]
    try:
        group = client.scale("scaled-endpoint", replicas=2)
        assert (group.name, group.replicas) == ("default", 2)
        wait_ready(client, "default", 2)
        entry = group_status(client, "default")
        assert entry.serve_status == "RUNNING"
        # Each replica, the new one included, loaded the routed version before serving.
        assert all(key in r.loaded for r in entry.replicas)
        # Scaled in place: the replica that was serving is still one of the two.
        assert original in {r.replica_id for r in entry.replicas}

        with pytest.raises(grpc.RpcError) as err:
            client.scale("scaled-endpoint", replicas=40)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot grow from 2 to 40 replicas: needs" in (err.value.details() or "")
        assert "CPU" in (err.value.details() or "")
        assert len(group_status(client, "default").replicas) == 2
        assert group_status(client, "default").group.replicas == 2
    finally:
        client.scale("scaled-endpoint", replicas=1)
    wait_ready(client, "default", 1)
    response = client.predict("scaled-endpoint", {"x": X})
    np.testing.assert_allclose(outputs_of(response)["y"], reference_linear(X, seed=11), atol=1e-5)


def test_a_serving_group_answers_on_its_own_port(
    stack: LocalStack, client: ModelplaneClient
) -> None:
    version = client.register("grouped", linear_model(seed=12))
    client.set_route("grouped-endpoint", [("grouped", version.version, 100)])
    port = free_port()
    try:
        group = client.put_serving_group("batch", port, ["grouped-endpoint"])
        assert (group.name, group.inference_port, list(group.endpoints)) == (
            "batch", port, ["grouped-endpoint"],
        )
        wait_ready(client, "batch", 1)
        assert group_status(client, "batch").serve_status == "RUNNING"
        with ModelplaneClient(stack.control_address, f"127.0.0.1:{port}") as batch:
            response = batch.predict("grouped-endpoint", {"x": X})
        assert (response.model, response.version) == ("grouped", version.version)
        # Scaling the endpoint now scales its group, not the default one.
        assert client.scale("grouped-endpoint", replicas=1).name == "batch"
    finally:
        client.put_serving_group("default", 0, ["grouped-endpoint"])
        serve.delete(app_name_for("batch"), _blocking=True)
