"""Faults under load, each bounded in time: Redis killed and restarted, the control
plane killed and restarted, one of two replicas killed. Short versions of what
``make chaos`` runs for longer (set MODELPLANE_CHAOS_SECONDS to stretch each phase)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from modelplane.client import ModelplaneClient
from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.registry.embedded_redis import EmbeddedRedis, free_port
from modelplane.serving.replica import ReplicaRuntime
from modelplane.v1 import inference_pb2_grpc
from tests.integration.chaos_load import Load
from tests.integration.serving_plane import prepare_registry

pytestmark = pytest.mark.integration

PHASE_S = float(os.environ.get("MODELPLANE_CHAOS_SECONDS", "1.0"))


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, so killing it harms no other test."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def _settings(redis: EmbeddedRedis, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis.url, "key_prefix": "chaos", "data_dir": tmp_path,
        "host": "127.0.0.1", "control_port": 0, "inference_port": 0,
        "telemetry_enabled": False, "shutdown_grace_s": 0.5,
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


def _stub(address: str) -> inference_pb2_grpc.InferenceServiceStub:
    return inference_pb2_grpc.InferenceServiceStub(grpc.insecure_channel(address))


def _wait_until(check: object, timeout_s: float, what: str) -> float:
    began = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - began < timeout_s:
        try:
            check()  # type: ignore[operator]
            return time.monotonic() - began
        except grpc.RpcError as err:
            last = err
            time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout_s} s: {last}")


def test_redis_killed_predictions_flow_writes_fail_fast_then_recover(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    settings = _settings(own_redis, tmp_path)
    prepare_registry(settings)
    control = ControlPlane(settings, own_redis.url, max_workers=4)
    control.start()
    replica = ReplicaRuntime(settings, "chaos-replica", reuse_port=False)
    stub = _stub(replica.address)
    client = ModelplaneClient(control.address)
    restarted: EmbeddedRedis | None = None
    try:
        with Load(lambda r: stub.Predict(r, timeout=5)) as load:
            load.wait_for(50)
            assert own_redis.pid is not None
            os.kill(own_redis.pid, signal.SIGKILL)  # no AOF flush, no goodbye
            time.sleep(PHASE_S)
            load.wait_for(50)  # predictions keep flowing from the routes in memory

            began = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                client.create_model("while-redis-is-down")
            failed_after = time.monotonic() - began
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "registry store unreachable" in (caught.value.details() or "")
            print(f"control-plane write failed after {failed_after:.2f} s")
            assert failed_after < 15, f"a write took {failed_after:.1f} s to fail"

            restarted = EmbeddedRedis(own_redis.data_dir, port=own_redis.port).start()
            recovered = _wait_until(lambda: client.create_model("after-redis-returned"), 30,
                                    "a control-plane write after Redis returned")
            print(f"control-plane writes resumed {recovered:.2f} s after Redis restarted")
            load.wait_for(50)
        assert load.failures == {}, f"{dict(load.failures)}; last: {load.last_error}"
        assert load.ok > 150
    finally:
        client.close()
        replica.close()
        control.stop()
        if restarted is not None:
            restarted.stop()


def test_control_plane_killed_and_restarted_leaves_predictions_untouched(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    settings = _settings(own_redis, tmp_path, control_port=free_port())
    prepare_registry(settings)
    control = ControlPlane(settings, own_redis.url, max_workers=4)
    control.start()
    replica = ReplicaRuntime(settings, "chaos-replica", reuse_port=False)
    stub = _stub(replica.address)
    try:
        with Load(lambda r: stub.Predict(r, timeout=5)) as load:
            load.wait_for(50)
            control.stop(grace_s=0)
            time.sleep(PHASE_S)
            load.wait_for(50)
            control = ControlPlane(settings, own_redis.url, max_workers=4)
            control.start()
            with ModelplaneClient(control.address) as client:
                _wait_until(lambda: client.create_model("after-restart"), 20, "a write")
            load.wait_for(50)
        assert load.failures == {}, f"{dict(load.failures)}; last: {load.last_error}"
    finally:
        replica.close()
        control.stop()


def test_one_of_two_replicas_killed_the_retrying_client_sees_no_error(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    port = free_port()
    settings = _settings(own_redis, tmp_path, inference_port=port, shutdown_grace_s=0.0)
    prepare_registry(settings)
    first = ReplicaRuntime(settings, "chaos-a")  # both bind the port (SO_REUSEPORT)
    second = ReplicaRuntime(settings, "chaos-b")
    address = f"127.0.0.1:{port}"
    retrying = ModelplaneClient("127.0.0.1:1", address)
    raw = _stub(address)
    assert retrying.inference is not None
    predict = retrying.inference.Predict
    try:
        with Load(lambda r: predict(r, timeout=5)) as with_retry, Load(
            lambda r: raw.Predict(r, timeout=5)
        ) as without_retry:
            with_retry.wait_for(50)
            without_retry.wait_for(50)
            first.close()  # one replica gone at once: its connections are cut
            time.sleep(PHASE_S)
            with_retry.wait_for(50)
            without_retry.wait_for(50)
        assert with_retry.failures == {}, (
            f"{dict(with_retry.failures)}; last: {with_retry.last_error}"
        )
        success = without_retry.ok / without_retry.total
        # Without retries only calls caught on the dying connection may fail.
        assert sum(without_retry.failures.values()) <= 2, dict(without_retry.failures)
        assert success > 0.99
    finally:
        retrying.close()
        first.close()
        second.close()
