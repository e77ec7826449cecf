"""Domain errors -> gRPC status, for sync and asyncio servers alike.

Servicers raise ``ModelplaneError`` subclasses; these interceptors turn them into
the status named by the error's code and the error's message. Anything else is a
bug: it is logged in full on the server and the client sees only
``INTERNAL: internal error``, never a stack trace.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc
from grpc import aio

from modelplane.domain.errors import ModelplaneError

_log = logging.getLogger(__name__)

_INTERNAL_MESSAGE = "internal error"

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
# Strings: the runtime classes are not generic, only their stubs are.
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def status_code_for(error: ModelplaneError) -> grpc.StatusCode:
    """The gRPC status whose name is the error's code name (ErrorCode mirrors them)."""
    return grpc.StatusCode[error.code.name]


# --------------------------------------------------------------------------- sync


def _already_aborted(context: grpc.ServicerContext, error: Exception) -> bool:
    # A sync ``context.abort`` raises a bare ``Exception`` after recording the
    # status; grpc then sends that status. Re-raising it untouched keeps a status
    # chosen by the servicer itself instead of masking it as INTERNAL.
    # ``code()`` exists at runtime on the sync context but is missing from its stubs.
    code = getattr(context, "code", None)
    return type(error) is Exception and code is not None and code() is not None


def _abort_sync(context: grpc.ServicerContext, error: Exception, method: str) -> NoReturn:
    if isinstance(error, ModelplaneError):
        context.abort(status_code_for(error), error.message)
    if _already_aborted(context, error):
        raise error
    if not context.is_active():
        # The client cancelled or went away (reading its stream then fails):
        # nobody is left to answer and it is not a server bug worth a trace.
        _log.debug("%s ended by the client: %r", method, error)
        # An abort, not a re-raise: grpc logs any other exception as an error.
        context.abort(grpc.StatusCode.CANCELLED, "the client cancelled the call")
    _log.exception("unhandled error in %s", method, exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, _INTERNAL_MESSAGE)


def _wrap_unary_response(
    behavior: Callable[[Any, grpc.ServicerContext], Any], method: str
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as error:
            _abort_sync(context, error, method)

    return wrapped


def _wrap_stream_response(
    behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]], method: str
) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
    # The behaviour returns an iterator whose body runs lazily, so errors surface
    # while grpc iterates: the wrapper has to be a generator too.
    def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from behavior(request, context)
        except Exception as error:
            _abort_sync(context, error, method)

    return wrapped


class ErrorInterceptor(grpc.ServerInterceptor):
    """Maps domain errors to status for a sync ``grpc.server``."""

    def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], grpc.RpcMethodHandler[_Req, _Resp] | None
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        options: dict[str, Any] = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary_response(handler.unary_unary, method), **options
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream_response(handler.unary_stream, method), **options
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary_response(handler.stream_unary, method), **options
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream_response(handler.stream_stream, method), **options
            )
        return handler


# -------------------------------------------------------------------------- asyncio


_AioContext: TypeAlias = "aio.ServicerContext[Any, Any]"


async def _abort_async(context: _AioContext, error: Exception, method: str) -> NoReturn:
    if isinstance(error, ModelplaneError):
        await context.abort(status_code_for(error), error.message)
    _log.exception("unhandled error in %s", method, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, _INTERNAL_MESSAGE)


def _wrap_async(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def wrapped_gen(request: Any, context: _AioContext) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except aio.AbortError:
                raise
            except Exception as error:
                await _abort_async(context, error, method)

        return wrapped_gen

    if inspect.iscoroutinefunction(behavior):
        coroutine_behavior: Callable[[Any, Any], Awaitable[Any]] = behavior

        async def wrapped(request: Any, context: _AioContext) -> Any:
            try:
                return await coroutine_behavior(request, context)
            except aio.AbortError:
                raise
            except Exception as error:
                await _abort_async(context, error, method)

        return wrapped

    # A plain function runs in grpc's thread pool, where the async abort cannot be
    # awaited; grpc.aio already reports its exceptions as UNKNOWN without a trace.
    return behavior


def _wrap_async_handler(handler: _Handler, method: str) -> _Handler:
    options: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_async(handler.unary_unary, method), **options
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_async(handler.unary_stream, method), **options
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_async(handler.stream_unary, method), **options
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_async(handler.stream_stream, method), **options
        )
    return handler


class AsyncErrorInterceptor(aio.ServerInterceptor):
    """Maps domain errors to status for a ``grpc.aio`` server.

    Sits on the predict path, so the wrapped handler is built once per method
    and reused: a call costs one dict lookup and an identity check on top of the
    handler lookup grpc does anyway.
    """

    def __init__(self) -> None:
        # method -> (the handler grpc returned, our wrapper of it). Keyed on the
        # original's identity so a handler that changes is wrapped afresh.
        self._cache: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(handler, method)
        self._cache[method] = (handler, wrapped)
        return wrapped

    def wrap(self, handler: _Handler, method: str) -> _Handler:
        """The handler with errors mapped: also applied once, at registration, by
        servers that wrap handlers instead of intercepting every call."""
        return _wrap_async_handler(handler, method)
