"""A grpc.aio server on a thread and event loop of its own.

Each serving replica runs one, so requests reach the replica's code directly
instead of hopping through a proxy. On its own loop the server neither competes
with the hosting framework's loop nor depends on it being idle. SO_REUSEPORT
lets every replica on a node bind the same client-facing port; the kernel
spreads connections across them.

Error mapping, auth and limits are applied to each method handler once, when
the services register, not as grpc interceptors: an aio interceptor chain runs
several coroutines per call to find a handler that never changes, which shows
on the predict path of a small model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from modelplane.codec.errors import AsyncErrorInterceptor

_log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# (servicer, server) -> None: adds one service to the server.
ServiceRegistrar = Callable[[aio.Server], None]
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class HandlerWrapper(Protocol):
    """Puts a check or a mapping around one method's handler, once."""

    def wrap(self, handler: _Handler, method: str) -> _Handler: ...


class PreEncodedResponses:
    """Lets the named methods answer with bytes they serialized themselves.

    A handler that writes its answer straight to wire bytes (codec/inference_wire.py,
    codec/oip_wire.py) returns ``bytes``; anything else it returns (an error answer
    in a stream, say) still goes through the method's own serializer.
    """

    def __init__(self, methods: Iterable[str]) -> None:
        self._methods = frozenset(methods)

    def wrap(self, handler: _Handler, method: str) -> _Handler:
        if method not in self._methods:
            return handler
        serialize = handler.response_serializer
        if serialize is None:
            return handler  # without a serializer, bytes go out as they are

        def serialize_unless_bytes(response: Any) -> bytes:
            if response.__class__ is bytes:
                return response
            return serialize(response)

        options: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": serialize_unless_bytes,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(handler.unary_unary, **options)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(handler.stream_stream, **options)
        return handler  # no pre-encoded method of the other two kinds exists


class _WrappedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler whose answers pass through the wrappers, wrapped once per method."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Callable[[_Handler, str], _Handler]):
        self._inner = inner
        self._wrap = wrap
        self._cache: dict[str, tuple[_Handler, _Handler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> _Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._cache[method] = (handler, wrapped)
        return wrapped


class _HandlerSink(Protocol):
    """What handlers are registered on: the real server, or a collector of them."""

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None: ...

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, _Handler]
    ) -> None: ...


class _WrappingRegistrar:
    """What the generated ``add_*_to_server`` functions see: registers on the real
    server with every handler wrapped."""

    def __init__(self, server: _HandlerSink, wrappers: Sequence[HandlerWrapper]) -> None:
        self._server = server
        # The first wrapper is the outermost, like a list of interceptors.
        self._wrappers = list(reversed(wrappers))

    def _wrap(self, handler: _Handler, method: str) -> _Handler:
        for wrapper in self._wrappers:
            handler = wrapper.wrap(handler, method)
        return handler

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_WrappedGenericHandler(handler, self._wrap) for handler in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, _Handler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service,
            {name: self._wrap(handler, f"/{service}/{name}") for name, handler in handlers.items()},
        )


class _HandlerCollector:
    """Stands in for a server to collect the handlers registrars add, by method."""

    def __init__(self) -> None:
        self.handlers: dict[str, _Handler] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """The generated code registers each method twice; the per-method form suffices."""

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, _Handler]
    ) -> None:
        for name, handler in handlers.items():
            self.handlers[f"/{service}/{name}"] = handler


class AioGrpcServer:
    """Starts with ``start()`` on a thread and loop of its own (returns the bound port
    once it is listening), or with ``await start_on_running_loop()`` on the caller's
    loop, stopped then with ``await stop_async()``.

    The second form exists for processes where another loop already uses grpc.aio
    (a Ray Serve replica creates a grpc.aio server of its own on its event loop):
    grpc.aio delivers every completion to the loop that first initialised it, so a
    server on any other loop pays a cross-thread hand-off per event (measured: a
    bare server lost ~16 % of its throughput when another loop created a grpc.aio
    server first). Hosting the server on that first loop avoids the hand-off.
    """

    def __init__(
        self,
        address: str,
        registrars: Sequence[ServiceRegistrar],
        service_names: Sequence[str],
        *,
        reuse_port: bool = True,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        name: str = "grpc-server",
        wrappers: Sequence[HandlerWrapper] = (),
        credentials: grpc.ServerCredentials | None = None,
        maximum_concurrent_rpcs: int | None = None,
    ) -> None:
        self._address = address
        self._registrars = list(registrars)
        self._service_names = list(service_names)
        self._options: list[tuple[str, Any]] = [
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._name = name
        # Inside the error mapping, so their refusals become status.
        self._wrappers: list[HandlerWrapper] = [AsyncErrorInterceptor(), *wrappers]
        self._credentials = credentials
        self._maximum_concurrent_rpcs = maximum_concurrent_rpcs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: aio.Server | None = None
        self._health: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._hosted = False
        self._stopped = False
        self.port = 0

    def start(self, timeout_s: float = 30.0) -> int:
        if self._thread is not None or self._hosted:
            raise RuntimeError("the server is already started")
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"the gRPC server on {self._address} did not start in {timeout_s} s")
        if self._startup_error is not None:
            raise RuntimeError(
                f"the gRPC server could not listen on {self._address}: {self._startup_error}"
            ) from self._startup_error
        return self.port

    async def start_on_running_loop(self) -> int:
        """Starts the server on the running loop (no thread of its own)."""
        if self._thread is not None or self._loop is not None:
            raise RuntimeError("the server is already started")
        self._loop = asyncio.get_running_loop()
        self._hosted = True
        try:
            await self._startup()
        except BaseException as error:
            raise RuntimeError(
                f"the gRPC server could not listen on {self._address}: {error}"
            ) from error
        return self.port

    def method_handlers(self) -> dict[str, _Handler]:
        """Every method's handler wrapped exactly as the server serves it, keyed by
        full method name: for calling the handler chain in process, without a
        socket (``loadtests/handler_cost.py`` measures it this way)."""
        collector = _HandlerCollector()
        registrar: Any = _WrappingRegistrar(collector, self._wrappers)
        for register in self._registrars:
            register(registrar)
        return collector.handlers

    @property
    def hosted(self) -> bool:
        """Runs on a loop it was given rather than on its own thread."""
        return self._hosted

    def is_alive(self) -> bool:
        if self._hosted:
            return self._server is not None and not self._stopped
        return self._thread is not None and self._thread.is_alive() and self._server is not None

    async def stop_async(self, grace_s: float = 2.0) -> None:
        """``stop`` for a hosted server, awaited on its loop."""
        if not self._hosted:
            await asyncio.get_running_loop().run_in_executor(None, self.stop, grace_s)
            return
        if self._stopped:
            return
        self._stopped = True
        await self._shutdown(grace_s)

    def stop(self, grace_s: float = 2.0) -> None:
        """Marks the health NOT_SERVING, drains in-flight calls for ``grace_s``, stops."""
        if self._hosted:
            self._stop_hosted_from_another_thread(grace_s)
            return
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(grace_s), loop)
        try:
            future.result(grace_s + 5.0)
        except Exception:
            _log.exception("stopping the gRPC server on %s failed", self._address)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
        self._thread = None

    def _stop_hosted_from_another_thread(self, grace_s: float) -> None:
        loop = self._loop
        if self._stopped or loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("stop() would block the server's own loop: await stop_async()")
        future = asyncio.run_coroutine_threadsafe(self.stop_async(grace_s), loop)
        try:
            future.result(grace_s + 5.0)
        except Exception:
            _log.exception("stopping the gRPC server on %s failed", self._address)

    # ---------------------------------------------------------------- internals

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as error:
            self._startup_error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _startup(self) -> None:
        # grpc.aio binds a server to the loop running when it is created, so
        # everything is built here, on the server's own loop.
        server = aio.server(
            options=self._options,
            # Beyond this, RESOURCE_EXHAUSTED at once: a replica never queues without bound.
            maximum_concurrent_rpcs=self._maximum_concurrent_rpcs,
        )
        registrar: Any = _WrappingRegistrar(server, self._wrappers)
        for register in self._registrars:
            register(registrar)
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        # Reflection lets grpcurl and generic clients discover the data plane's
        # services without a copy of the protos.
        reflection.enable_server_reflection(
            (
                *self._service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        if self._credentials is not None:
            port = server.add_secure_port(self._address, self._credentials)
        else:
            port = server.add_insecure_port(self._address)
        if port == 0:
            raise RuntimeError("bind failed")
        await server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        await health.set("", serving)
        for name in self._service_names:
            await health.set(name, serving)
        self._server, self._health, self.port = server, health, port
        _log.info("gRPC server listening on %s (port %d)", self._address, port)

    async def _shutdown(self, grace_s: float) -> None:
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace_s)


def health_status(address: str, service: str = "", timeout_s: float = 2.0) -> str:
    """The standard health check's answer for ``service``, e.g. ``"SERVING"``."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
