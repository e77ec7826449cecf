"""Server-side deadlines and request-size limits for the replicas' ``grpc.aio`` server.

A call without a deadline gets the default one; a longer one is cut to the
maximum, so no request can hold a replica's resources forever. Tensors are
checked on their declared shapes before anything is decoded or allocated.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeAlias

import grpc
from grpc import aio

from modelplane.codec.tensor_limits import check_shape_limits
from modelplane.domain.errors import DeadlineExceeded

_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def check_tensor_limits(request: Any, max_rows: int, max_elements: int) -> None:
    """Refuses inputs whose declared shape exceeds the limits (0 disables a limit)."""
    for tensor in getattr(request, "inputs", ()):
        check_shape_limits(tensor.name, tensor.shape, max_rows, max_elements)


class AsyncLimitsInterceptor(aio.ServerInterceptor):
    """Bounds unary calls' run time and the size of their tensors."""

    def __init__(
        self,
        default_deadline_s: float,
        max_deadline_s: float,
        max_rows: int = 0,
        max_elements: int = 0,
        checked_by_handlers: Collection[str] = (),
    ) -> None:
        """``checked_by_handlers``: methods whose handlers apply the tensor limits
        themselves while decoding (``check_shape_limits``); only the deadline is
        added to those."""
        self._default = default_deadline_s
        self._max = max_deadline_s
        self._max_rows = max_rows
        self._max_elements = max_elements
        self._checked_by_handlers = frozenset(checked_by_handlers)
        self._cache: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
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
        """The handler bounded in time and tensor size (unary coroutine handlers only)."""
        if handler.unary_unary is None or not inspect.iscoroutinefunction(handler.unary_unary):
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._bounded(handler.unary_unary, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _budget(self, context: Any) -> float | None:
        """The server's own timer, or None when the client's deadline already bounds the call.

        gRPC cancels a call at the client's deadline by itself; a timer of ours is
        only needed without one, or past the maximum. Skipping it on the common
        path saves a timer and a task per request.
        """
        remaining = context.time_remaining()
        if remaining is None or remaining > 1e8:  # grpc reports "no deadline" as huge
            return self._default
        if remaining <= self._max:
            return None
        return self._max

    def _bounded(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        max_rows, max_elements = self._max_rows, self._max_elements
        if method in self._checked_by_handlers or not (max_rows or max_elements):
            max_rows = max_elements = 0

        async def bounded(request: Any, context: Any) -> Any:
            if max_rows or max_elements:
                check_tensor_limits(request, max_rows, max_elements)
            budget = self._budget(context)
            if budget is None:
                return await behavior(request, context)
            try:
                return await _within(behavior(request, context), budget)
            except (TimeoutError, asyncio.TimeoutError):  # distinct classes before 3.11
                raise DeadlineExceeded(
                    f"{method}: not answered within {budget:.3g} s (the server caps a "
                    f"request at {self._max:.3g} s, {self._default:.3g} s without a deadline)"
                ) from None

        return bounded


async def _within(call: Awaitable[Any], seconds: float) -> Any:
    # asyncio.timeout (3.11+) runs the call in the current task; wait_for wraps it
    # in a new one, which costs several times more per request.
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await call
    return await asyncio.wait_for(call, seconds)
