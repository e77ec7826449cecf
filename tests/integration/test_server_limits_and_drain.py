"""The replicas' gRPC server (AioGrpcServer, as installed by a replica) bounds
concurrency and run time, and drains in-flight calls on stop; the control plane
drains too."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc import aio

from modelplane.config import Settings
from modelplane.control.server import ControlPlane
from modelplane.serving.grpc_server import AioGrpcServer
from modelplane.serving.security import data_plane_security
from modelplane.v1 import registry_pb2, registry_pb2_grpc

pytestmark = pytest.mark.integration

SLEEP = "/test.Slow/Sleep"


async def _sleep(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
    # The request carries how long to take, in milliseconds.
    await asyncio.sleep(int(request.decode() or "0") / 1000)
    return b"done"


def _register(server: aio.Server) -> None:
    handler = grpc.unary_unary_rpc_method_handler(_sleep)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Slow", {"Sleep": handler}),)
    )


def _server(**overrides: object) -> AioGrpcServer:
    settings = Settings(**overrides)  # type: ignore[arg-type]
    server = AioGrpcServer(
        "127.0.0.1:0", [_register], [], reuse_port=False,
        **data_plane_security(settings).kwargs(),
    )
    server.start()
    return server


def _sleeper(port: int) -> grpc.UnaryUnaryMultiCallable:  # type: ignore[type-arg]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return channel.unary_unary(SLEEP)


@pytest.fixture()
def limited() -> Iterator[AioGrpcServer]:
    server = _server(max_concurrent_rpcs=2, default_deadline_s=0.3, max_deadline_s=0.6)
    yield server
    server.stop(0.1)


def test_past_the_concurrency_limit_calls_get_resource_exhausted(
    limited: AioGrpcServer,
) -> None:
    call = _sleeper(limited.port)
    with futures.ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(call.with_call, b"250", timeout=5) for _ in range(6)]
        outcomes = []
        for future in pending:
            try:
                future.result()
                outcomes.append("ok")
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "Concurrent RPC limit exceeded" in (err.details() or "")
                outcomes.append("exhausted")
    assert outcomes.count("ok") >= 2 and outcomes.count("exhausted") >= 1, outcomes


def test_a_call_without_deadline_gets_the_servers_default(limited: AioGrpcServer) -> None:
    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        _sleeper(limited.port)(b"5000")
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.details() == (
        "/test.Slow/Sleep: not answered within 0.3 s (the server caps a request at 0.6 s, "
        "0.3 s without a deadline)"
    )
    assert time.monotonic() - began < 3


def test_a_longer_deadline_than_the_maximum_is_cut(limited: AioGrpcServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _sleeper(limited.port)(b"5000", timeout=60)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "not answered within 0.6 s" in (caught.value.details() or "")
    assert _sleeper(limited.port)(b"10", timeout=60) == b"done"


def test_stop_drains_in_flight_calls_and_refuses_new_ones() -> None:
    server = _server()
    call = _sleeper(server.port)
    with futures.ThreadPoolExecutor(8) as pool:
        in_flight = [pool.submit(call, b"700", timeout=10) for _ in range(8)]
        time.sleep(0.3)  # all eight are running on the server now
        stopper = threading.Thread(target=server.stop, args=(5.0,))
        stopper.start()
        time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as refused:
            _sleeper(server.port)(b"0", timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert [f.result() for f in in_flight] == [b"done"] * 8
        stopper.join(10)


def test_the_control_plane_drains_an_upload_in_flight(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    settings = Settings(
        redis_url=redis_url, key_prefix=key_prefix, data_dir=tmp_path, control_port=0,
        shutdown_grace_s=10.0,
    )
    control = ControlPlane(settings, redis_url, max_workers=4)
    control.start()
    stub = registry_pb2_grpc.RegistryServiceStub(grpc.insecure_channel(control.address))
    stopping = threading.Event()

    def slow_upload() -> Iterator[registry_pb2.RegisterVersionRequest]:
        yield registry_pb2.RegisterVersionRequest(
            header=registry_pb2.RegisterVersionHeader(model="drained", create_model=True)
        )
        stopping.set()
        for _ in range(4):  # still streaming while the server stops
            time.sleep(0.25)
            yield registry_pb2.RegisterVersionRequest(chunk=b"\x00" * 64)

    stopper = threading.Thread(target=lambda: (stopping.wait(5), control.stop()))
    stopper.start()
    with pytest.raises(grpc.RpcError) as caught:
        stub.RegisterVersion(slow_upload(), timeout=30)
    stopper.join(30)
    # The server read the whole stream and judged it: the upload was not cut off.
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a loadable ONNX model" in (caught.value.details() or "")
