"""The error interceptors on real servers: status and message reach the client."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc import aio

from modelplane.codec.errors import AsyncErrorInterceptor, ErrorInterceptor, status_code_for
from modelplane.domain import errors

_SERVICE = "test.Errors"
_CANCEL_SEEN = threading.Event()
_FIRST_REQUEST_READ = threading.Event()


def _fail(request: bytes) -> None:
    if request == b"notfound":
        raise errors.NotFound("model 'fraud' not found")
    if request == b"bug":
        raise ZeroDivisionError("secret internals")


# The classes of the one hierarchy in domain/errors.py, whatever else has been imported.
_DOMAIN_ERRORS = [
    value
    for value in vars(errors).values()
    if isinstance(value, type)
    and issubclass(value, errors.ModelplaneError)
    and value is not errors.ModelplaneError
]


@pytest.mark.parametrize("cls", _DOMAIN_ERRORS)
def test_every_error_code_maps_to_the_status_of_the_same_name(
    cls: type[errors.ModelplaneError],
) -> None:
    assert status_code_for(cls("x")).name == cls.code.name


# ---------------------------------------------------------------------------- sync


def _sync_handlers() -> grpc.GenericRpcHandler:
    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        _fail(request)
        if request == b"abort":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "own abort")
        return b"ok:" + request

    def server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"first"
        _fail(request)
        yield b"second"

    def client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        for request in requests:
            _fail(request)
        return b"done"

    def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            _fail(request)
            yield request

    def until_cancelled(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        try:
            for _ in requests:
                _FIRST_REQUEST_READ.set()
            # Depending on timing, a cancelled stream ends quietly or raises while
            # being read; either way the handler then fails on a dead call (once
            # the cancellation has reached the context: bounded wait).
            deadline = time.monotonic() + 5
            while context.is_active() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not context.is_active():
                raise RuntimeError("the request stream is gone")
        finally:
            _CANCEL_SEEN.set()
        return b"never"

    return grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "UntilCancelled": grpc.stream_unary_rpc_method_handler(until_cancelled),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


@pytest.fixture(scope="module")
def sync_channel() -> Iterator[grpc.Channel]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2), interceptors=[ErrorInterceptor()]
    )
    server.add_generic_rpc_handlers((_sync_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel
    channel.close()
    server.stop(grace=None)


def _call(channel: grpc.Channel, kind: str, request: Any) -> Any:
    path = f"/{_SERVICE}/{kind}"
    if kind == "Unary":
        return channel.unary_unary(path)(request, timeout=10)
    if kind == "ServerStream":
        return list(channel.unary_stream(path)(request, timeout=10))
    if kind == "ClientStream":
        return channel.stream_unary(path)(iter([b"a", request]), timeout=10)
    return list(channel.stream_stream(path)(iter([b"a", request]), timeout=10))


KINDS = ["Unary", "ServerStream", "ClientStream", "Bidi"]


@pytest.mark.parametrize("kind", KINDS)
def test_sync_domain_error_becomes_its_status(sync_channel: grpc.Channel, kind: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(sync_channel, kind, b"notfound")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "model 'fraud' not found"


@pytest.mark.parametrize("kind", KINDS)
def test_sync_bug_is_internal_without_details_and_logged(
    sync_channel: grpc.Channel, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR, logger="modelplane.codec.errors"),
        pytest.raises(grpc.RpcError) as info,
    ):
        _call(sync_channel, kind, b"bug")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "internal error"
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)


def test_sync_success_passes_through(sync_channel: grpc.Channel) -> None:
    assert _call(sync_channel, "Unary", b"x") == b"ok:x"
    assert _call(sync_channel, "Bidi", b"y") == [b"a", b"y"]


def test_sync_servicer_own_abort_is_kept(sync_channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _call(sync_channel, "Unary", b"abort")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == "own abort"


def test_sync_client_cancellation_is_not_logged_as_a_bug(
    sync_channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    def requests() -> Iterator[bytes]:
        yield b"one"
        release.wait(10)

    with caplog.at_level(logging.DEBUG, logger="modelplane.codec.errors"):
        call: grpc.StreamUnaryMultiCallable[bytes, bytes] = sync_channel.stream_unary(
            f"/{_SERVICE}/UntilCancelled"
        )
        future = call.future(requests(), timeout=10)
        # Cancel only once the handler is running, or the call may end before it.
        assert _FIRST_REQUEST_READ.wait(5)
        future.cancel()
        release.set()
        assert _CANCEL_SEEN.wait(5)
        # The interceptor logs after the handler returns: wait for it, bounded.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            "ended by the client" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.02)
    assert future.cancelled()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any("ended by the client" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------- asyncio


def _async_handlers() -> grpc.GenericRpcHandler:
    async def unary(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        _fail(request)
        if request == b"abort":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "own abort")
        return b"ok:" + request

    async def server_stream(
        request: bytes, context: aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        yield b"first"
        _fail(request)
        yield b"second"

    return grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        },
    )


async def _async_scenario() -> list[tuple[grpc.StatusCode, str]]:
    interceptor = AsyncErrorInterceptor()
    server = aio.server(interceptors=[interceptor])
    server.add_generic_rpc_handlers((_async_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    outcomes: list[tuple[grpc.StatusCode, str]] = []
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                f"/{_SERVICE}/Unary"
            )
            stream: aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                f"/{_SERVICE}/ServerStream"
            )
            assert await unary(b"x", timeout=10) == b"ok:x"
            for request in (b"notfound", b"bug", b"abort"):
                try:
                    await unary(request, timeout=10)
                except aio.AioRpcError as error:
                    outcomes.append((error.code(), error.details() or ""))
            try:
                [item async for item in stream(b"notfound", timeout=10)]
            except aio.AioRpcError as error:
                outcomes.append((error.code(), error.details() or ""))
        # One wrapper per method, reused across calls.
        assert sorted(interceptor._cache) == [f"/{_SERVICE}/ServerStream", f"/{_SERVICE}/Unary"]
    finally:
        await server.stop(None)
    return outcomes


def test_async_interceptor_maps_errors(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="modelplane.codec.errors"):
        outcomes = asyncio.run(_async_scenario())
    assert outcomes == [
        (grpc.StatusCode.NOT_FOUND, "model 'fraud' not found"),
        (grpc.StatusCode.INTERNAL, "internal error"),
        (grpc.StatusCode.PERMISSION_DENIED, "own abort"),
        (grpc.StatusCode.NOT_FOUND, "model 'fraud' not found"),
    ]
    assert any("ZeroDivisionError" in (r.exc_text or "") for r in caplog.records)
