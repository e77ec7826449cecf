"""Rollout transitions, alerts and retirements reach webhook subscribers: the real
control plane (gRPC, Redis, its rollout loop, alert watcher and dispatcher) POSTing
signed events to a local HTTP receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.domain.models import RouteTarget
from modelplane.sample_models import linear_model
from modelplane.telemetry.drift import BIN_COUNT
from modelplane.v1 import (
    registry_pb2,
    registry_pb2_grpc,
    rollout_pb2,
    rollout_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)
from modelplane.webhooks.signing import verify
from tests.integration.webhook_receiver import Receiver, running_receiver, wait_for

pytestmark = pytest.mark.integration
SECRET = "lifecycle-secret-value"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with running_receiver("/hooks") as state:
        yield state


@pytest.fixture()
def control(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[ControlPlane]:
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path, control_port=0,
        inference_port=0, webhook_allow_private=True, alert_watch_interval_s=0.1,
        rollout_tick_s=0.2,
    )
    plane = ControlPlane(settings, redis_url)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop(0)


def _drift(control: ControlPlane, bin_index: int, count: int) -> None:
    counts = [0] * BIN_COUNT
    counts[bin_index] = count
    assert control.telemetry.drift is not None
    control.telemetry.drift.add("fraud", "m", 2, "x0", counts, time.time())


def test_rollout_alert_and_retirement_events_are_delivered_signed(
    control: ControlPlane, receiver: Receiver
) -> None:
    channel = grpc.insecure_channel(control.address)
    hooks = webhooks_pb2_grpc.WebhookServiceStub(channel)
    rollouts = rollout_pb2_grpc.RolloutServiceStub(channel)
    registry = registry_pb2_grpc.RegistryServiceStub(channel)
    kinds = ["rollout.advanced", "rollout.rolled_back", "alert.drift", "endpoint.retired"]
    hooks.CreateSubscription(
        webhooks_pb2.CreateSubscriptionRequest(url=receiver.url, events=kinds, secret=SECRET)
    )
    for seed in (1, 2):
        control.registry.register_version("m", "", True, [linear_model(seed=seed)])
    control.registry.set_route("fraud", [RouteTarget("m", 100, version=1)], 0)

    rollouts.StartRollout(rollout_pb2.StartRolloutRequest(
        endpoint="fraud", version=2, steps=[10, 100], interval_seconds=60.0,
        gates=rollout_pb2.RolloutGates(max_p99_ratio=2.0, max_error_rate=0.1),
    ))
    rollouts.AbortRollout(rollout_pb2.GetRolloutRequest(endpoint="fraud"))
    wait_for(lambda: receiver.events()[:2] == ["rollout.advanced", "rollout.rolled_back"])

    # Drift on the canary: a baseline in one bin, then recent values in another.
    _drift(control, 3, 500)
    _drift(control, BIN_COUNT - 2, 200)
    wait_for(lambda: "alert.drift" in receiver.events())
    time.sleep(0.6)  # several watcher ticks while the drift lasts: still one event
    assert receiver.events().count("alert.drift") == 1

    registry.RetireEndpoint(registry_pb2.RetireEndpointRequest(endpoint="fraud"))
    wait_for(lambda: "endpoint.retired" in receiver.events())
    channel.close()

    now = int(time.time())
    got = receiver.received()
    assert [d.event for d in got] == [
        "rollout.advanced", "rollout.rolled_back", "alert.drift", "endpoint.retired"
    ]
    bodies = []
    for delivery in got:
        assert verify(SECRET, delivery.signature, delivery.body, now), delivery.event
        assert not verify("another-secret-value", delivery.signature, delivery.body, now)
        bodies.append(json.loads(delivery.body))
    started, aborted, drift, retired = bodies
    assert (started["action"], started["actor"], started["endpoint"]) == (
        "rollout_started", "rollout", "fraud"
    )
    assert started["detail"]["canary_weight"] == 10
    assert started["detail"]["canary_version"] == 2
    assert (aborted["action"], aborted["detail"]["state"]) == ("rollout_aborted", "aborted")
    assert aborted["detail"]["canary_weight"] == 0
    assert (drift["action"], drift["endpoint"], drift["model"]) == ("alert_drift", "fraud", "m")
    assert drift["detail"]["version"] == 2
    assert drift["detail"]["observed"] > drift["detail"]["threshold"]
    assert retired["action"] == "retire_endpoint"
    assert retired["before"]["targets"] == [{"model": "m", "version": 1, "weight": 100}]
