"""Server-side deadlines and request-size limits for the replicas' ``grpc.aio`` server.

A call without a deadline gets the default one; a longer one is cut to the
maximum, so no request can hold a replica's resources forever. Tensors are
checked on their declared shapes before anything is decoded or allocated.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from grpc import aio

from modelplane.domain.errors import DeadlineExceeded, InvalidArgument

_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def check_tensor_limits(request: Any, max_rows: int, max_elements: int) -> None:
    """Refuses inputs whose declared shape exceeds the limits (0 disables a limit).

    Runs on every request: a shape is read once, and negative dimensions (left
    for the decoder to refuse) skip the element count.
    """
    for tensor in getattr(request, "inputs", ()):
        shape = tensor.shape
        if not shape:
            continue
        if max_rows and shape[0] > max_rows:
            raise InvalidArgument(
                f"inputs[{tensor.name}].shape[0]: {shape[0]} rows exceed the limit of "
                f"{max_rows} per request; split the batch"
            )
        if max_elements and min(shape) >= 0:
            elements = math.prod(shape)
            if elements > max_elements:
                raise InvalidArgument(
                    f"inputs[{tensor.name}].shape: {elements} elements exceed the limit of "
                    f"{max_elements} per tensor"
                )


class AsyncLimitsInterceptor(aio.ServerInterceptor):
    """Bounds unary calls' run time and the size of their tensors."""

    def __init__(
        self,
        default_deadline_s: float,
        max_deadline_s: float,
        max_rows: int = 0,
        max_elements: int = 0,
    ) -> None:
        self._default = default_deadline_s
        self._max = max_deadline_s
        self._max_rows = max_rows
        self._max_elements = max_elements
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
        async def bounded(request: Any, context: Any) -> Any:
            check_tensor_limits(request, self._max_rows, self._max_elements)
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
