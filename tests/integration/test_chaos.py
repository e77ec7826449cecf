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
import psutil
import pytest

from loadtests.procs import ServerProcess
from modelplane.client import ModelplaneClient
from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.registry.embedded_redis import EmbeddedRedis, free_port
from modelplane.serving.replica import ReplicaRuntime
from modelplane.v1 import inference_pb2_grpc
from tests.integration.chaos_load import Load
from tests.integration.serving_plane import predict_request, prepare_registry

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


def test_one_of_two_replicas_closed_the_retrying_client_sees_no_error(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """The graceful variant: a replica closes (GOAWAY, listener gone) under load."""
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


def _replica_process(settings: Settings, replica_id: str) -> ServerProcess:
    env = {
        "MODELPLANE_REDIS_URL": settings.redis_url or "",
        "MODELPLANE_KEY_PREFIX": settings.key_prefix,
        "MODELPLANE_DATA_DIR": str(settings.data_dir),
        "MODELPLANE_HOST": settings.host,
        "MODELPLANE_INFERENCE_PORT": str(settings.inference_port),
        "MODELPLANE_TELEMETRY_ENABLED": "false",
        "MODELPLANE_SHUTDOWN_GRACE_S": "0.5",
    }
    return ServerProcess(
        "tests.integration.chaos_replica", ["--id", replica_id], env=env,
        startup_timeout=60, stop_timeout=10,
    ).start()


def _connection_ports(port: int) -> set[int]:
    """Local ports of this process's established connections to ``port``."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


def _replica_holding(
    replicas: list[ServerProcess], port: int, client_port: int
) -> ServerProcess:
    """The replica process at the other end of the client connection from ``client_port``."""
    for replica in replicas:
        for c in psutil.Process(replica.pid).net_connections(kind="tcp"):
            if c.laddr.port == port and c.raddr and c.raddr.port == client_port:
                return replica
    raise AssertionError(f"no replica holds the connection from port {client_port}")


def _connect(client: ModelplaneClient, port: int, known: set[int]) -> int | None:
    """One prediction, then the local port of the connection it opened (None when
    the channel shares one already open: gRPC pools connections of equal settings)."""
    assert client.inference is not None
    client.inference.Predict(predict_request("open"), timeout=10)
    opened = _connection_ports(port) - known
    assert len(opened) <= 1, opened
    return opened.pop() if opened else None


def test_one_of_two_replica_processes_killed_under_load_meets_the_success_targets(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """SIGKILL of the replica process both clients are connected to: the client
    without retry loses at most the calls in flight (>= 99.9 % over >= 2,000
    predictions), the retrying client none."""
    port = free_port()
    settings = _settings(own_redis, tmp_path, inference_port=port)
    prepare_registry(settings)
    replicas: list[ServerProcess] = []
    clients: list[ModelplaneClient] = []
    try:
        replicas += [_replica_process(settings, "chaos-a"), _replica_process(settings, "chaos-b")]
        address = f"127.0.0.1:{port}"
        # Built as a user builds them; the control address is never dialled.
        plain = ModelplaneClient("127.0.0.1:1", address, retry_predictions=False)
        clients.append(plain)
        plain_port = _connect(plain, port, set())
        assert plain_port is not None
        victim = _replica_holding(replicas, port, plain_port)
        # The kernel spreads connections over the two listeners: should the retrying
        # client open a connection of its own, redial until it lands on the same
        # replica, so one kill hits both.
        for _ in range(40):
            retrying = ModelplaneClient("127.0.0.1:1", address)
            clients.append(retrying)
            retrying_port = _connect(retrying, port, {plain_port})
            if retrying_port is None or _replica_holding(replicas, port, retrying_port) is victim:
                break
            retrying.close()
            time.sleep(0.05)  # the closed connection leaves the table
        else:
            raise AssertionError("40 connections in a row landed on the other replica")
        survivor = next(r for r in replicas if r is not victim)
        assert plain.inference is not None and retrying.inference is not None
        plain_stub, retrying_stub = plain.inference, retrying.inference
        with Load(lambda r: plain_stub.Predict(r, timeout=5)) as without_retry, Load(
            lambda r: retrying_stub.Predict(r, timeout=5)
        ) as with_retry:
            without_retry.wait_for(1000, timeout_s=60)
            with_retry.wait_for(200)
            before = without_retry.total, with_retry.total
            os.kill(victim.pid, signal.SIGKILL)
            without_retry.wait_for(2000, timeout_s=60)
            with_retry.wait_for(200)
        # Both clients were on the killed process, and now talk to the survivor.
        now = _connection_ports(port)
        assert plain_port not in now and retrying_port not in now
        assert victim.stop() == -signal.SIGKILL  # reaped: it died of the signal
        for client_port in now:
            assert _replica_holding([survivor], port, client_port) is survivor
        print(
            f"\nSIGKILL of one of two replicas: without retry {without_retry.ok}/"
            f"{without_retry.total} ok ({before[0]} before the kill), failures "
            f"{dict(without_retry.errors)}; with retry {with_retry.ok}/{with_retry.total} ok"
        )
        assert with_retry.failures == {}, dict(with_retry.errors)
        assert without_retry.total >= 2000
        assert without_retry.ok / without_retry.total >= 0.999, dict(without_retry.errors)
        # Only calls caught on the dead connection fail, with the transport's reason;
        # none fails fast while the channel reconnects.
        assert set(without_retry.failures) <= {"UNAVAILABLE"}, dict(without_retry.errors)
        for message in without_retry.errors:
            assert "failed to connect" not in message, dict(without_retry.errors)
    finally:
        for client in clients:
            client.close()
        for replica in replicas:
            replica.stop()


def test_a_prediction_sent_while_the_channel_reconnects_waits_for_the_replica(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    """What turns a replica kill into ~1 s of errors without it: the connection
    breaks, the reconnect fails (nothing listens yet), and a plain gRPC channel
    then fails every call at once for its reconnect backoff (1 s and growing).
    The client's channel holds the call until a replica answers on the port."""
    port = free_port()
    settings = _settings(own_redis, tmp_path, inference_port=port, shutdown_grace_s=0.0)
    prepare_registry(settings)
    replica = ReplicaRuntime(settings, "chaos-first")
    address = f"127.0.0.1:{port}"
    plain = ModelplaneClient("127.0.0.1:1", address, retry_predictions=False)
    raw = _stub(address)
    request = predict_request("open")
    assert plain.inference is not None
    plain.inference.Predict(request, timeout=5)
    raw.Predict(request, timeout=5)
    replacement: ReplicaRuntime | None = None
    try:
        replica.close()  # both connections cut; nothing listens on the port now
        # The stock channel fails fast: its reconnect found nothing listening.
        with pytest.raises(grpc.RpcError) as refused:
            raw.Predict(request, timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "failed to connect to all addresses" in (refused.value.details() or "")
        waiting = plain.inference.Predict.future(request, timeout=30)
        time.sleep(0.5)  # the reconnect attempts fail meanwhile
        assert not waiting.done(), "the call did not wait for a replica"
        replacement = ReplicaRuntime(settings, "chaos-second")
        back = time.monotonic()
        response = waiting.result()
        waited = time.monotonic() - back
        assert response.endpoint == "open" and response.version == 1
        print(f"\nanswered {waited:.2f} s after a replica was back on the port")
        # Reconnect backoff capped at 1 s (+20 % jitter): a plain channel that has
        # been failing for a while waits up to 2 minutes between attempts.
        assert waited < 2.0
    finally:
        plain.close()
        replica.close()
        if replacement is not None:
            replacement.close()
