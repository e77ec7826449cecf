"""gRPC server interceptors: authentication and role checks, for sync and asyncio servers.

They raise domain errors (``Unauthenticated``, ``PermissionDenied``) from inside
the handler they return, so the error interceptor — installed *before* these,
hence outermost — maps them to status like any other error. A method missing
from the role table is refused: the table fails closed.

The authenticated principal is made current (a ``ContextVar``) for the handler,
so the audit trail records who called, not what the client claims to be.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
from grpc import aio

from modelplane.domain.errors import ModelplaneError, PermissionDenied, Unauthenticated
from modelplane.security.authenticator import Authenticator
from modelplane.security.principals import Principal, Role, reset_principal, set_principal

_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_Metadata: TypeAlias = "Sequence[tuple[str, str | bytes]]"


def authorize(
    authenticator: Authenticator,
    method: str,
    required: Role | None,
    metadata: _Metadata | None,
) -> Principal | None:
    """The principal allowed to call ``method``; raises when it is not. ``None``: no check."""
    if required is None:
        raise PermissionDenied(f"{method}: no role is mapped for this method; it is refused")
    if required is Role.ANYONE:
        return None
    principal = authenticator.authenticate(metadata)
    if not principal.may(required):
        raise PermissionDenied(
            f"{method}: needs role {required.label}; {principal.name} has {principal.role.label}"
        )
    return principal


def _rebuild(handler: _Handler, wrap: Callable[[Callable[..., Any], bool], Any]) -> _Handler:
    """The same kind of handler with each behaviour passed through ``wrap(behaviour, streams)``."""
    options: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False), **options)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, True), **options)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, False), **options)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True), **options)
    return handler


# --------------------------------------------------------------------------- sync


def _sync_refusal(error: ModelplaneError) -> Callable[[Callable[..., Any], bool], Any]:
    def wrap(behavior: Callable[..., Any], streams: bool) -> Any:
        if streams:

            def refuse_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                raise error
                yield  # pragma: no cover - makes this a generator, as grpc expects

            return refuse_stream

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            raise error

        return refuse

    return wrap


def _sync_as(principal: Principal | None) -> Callable[[Callable[..., Any], bool], Any]:
    def wrap(behavior: Callable[..., Any], streams: bool) -> Any:
        if streams:

            def as_principal_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                token = set_principal(principal)
                try:
                    yield from behavior(request, context)
                finally:
                    _reset_quietly(token)

            return as_principal_stream

        def as_principal(request: Any, context: grpc.ServicerContext) -> Any:
            token = set_principal(principal)
            try:
                return behavior(request, context)
            finally:
                _reset_quietly(token)

        return as_principal

    return wrap


def _reset_quietly(token: object) -> None:
    # A generator resumed on another thread: its context is gone anyway.
    with contextlib.suppress(ValueError):
        reset_principal(token)


class AuthInterceptor(grpc.ServerInterceptor):
    """For a sync ``grpc.server``: every call's method must be in ``roles``."""

    def __init__(self, authenticator: Authenticator, roles: Mapping[str, Role]) -> None:
        self._authenticator = authenticator
        self._roles = dict(roles)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        try:
            principal = authorize(
                self._authenticator,
                method,
                self._roles.get(method),
                handler_call_details.invocation_metadata,
            )
        except ModelplaneError as error:
            return _rebuild(handler, _sync_refusal(error))
        return _rebuild(handler, _sync_as(principal))


# -------------------------------------------------------------------------- asyncio

# What a data-plane request needs: a fixed role, or "a token if its endpoint is protected".
ENDPOINT = "endpoint"
Access: TypeAlias = "Role | str"


class EndpointPolicy:
    """Which inference endpoints need a token: none, some, or ``*`` (all).

    A request that names a model directly (no endpoint) could reach any model an
    endpoint serves, so it needs a token whenever any endpoint is protected.
    """

    def __init__(self, protected: Sequence[str]) -> None:
        self._all = "*" in protected
        self._protected = frozenset(protected)

    @property
    def active(self) -> bool:
        return bool(self._protected)

    def requires_token(self, endpoint: str) -> bool:
        if not self._protected:
            return False
        return self._all or not endpoint or endpoint in self._protected


def endpoint_of(request: Any) -> str:
    """The endpoint a data-plane request names (``""`` when it names a model directly)."""
    if hasattr(request, "WhichOneof"):
        try:
            if request.WhichOneof("target") == "endpoint":
                return str(request.endpoint)
            return ""
        except ValueError:
            pass  # not a PredictRequest: no such oneof
    # The Open Inference Protocol addresses endpoints and models by one name; only
    # "all endpoints protected" can be honoured for it without resolving that name.
    return ""


class AsyncAuthInterceptor(aio.ServerInterceptor):
    """For the replicas' ``grpc.aio`` server.

    ``access`` maps each method to a role (checked when ``enforce_roles``: the
    platform's auth is on) or to ``ENDPOINT`` (a token only for protected endpoints).
    """

    def __init__(
        self,
        authenticator: Authenticator | None,
        access: Mapping[str, Access],
        *,
        enforce_roles: bool,
        endpoints: EndpointPolicy,
    ) -> None:
        self._authenticator = authenticator
        self._access = dict(access)
        self._enforce_roles = enforce_roles
        self._endpoints = endpoints
        self._cache: dict[str, tuple[_Handler, _Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(handler, method)
        self._cache[method] = (handler, wrapped)
        return wrapped

    def wrap(self, handler: _Handler, method: str) -> _Handler:
        """The handler with this method's check in front (unchanged when none applies)."""
        access = self._access.get(method)
        if access == ENDPOINT:
            if not self._endpoints.active:
                return handler
            return _rebuild(handler, self._endpoint_check(method))
        role = access if isinstance(access, Role) else None
        if role is Role.ANYONE or (not self._enforce_roles and role is not None):
            return handler
        return _rebuild(handler, self._role_check(method, role))

    def _principal(self, method: str, required: Role | None, context: Any) -> Principal | None:
        if self._authenticator is None:
            raise Unauthenticated(f"{method}: authentication is required but no credentials "
                                  "are configured on this server")
        return authorize(self._authenticator, method, required, context.invocation_metadata())

    def _role_check(self, method: str, role: Role | None) -> Callable[..., Any]:
        def check(context: Any, request: Any) -> Principal | None:
            return self._principal(method, role, context)

        return _async_wrapper(check)

    def _endpoint_check(self, method: str) -> Callable[..., Any]:
        policy = self._endpoints

        def check(context: Any, request: Any) -> Principal | None:
            if request is not None and not policy.requires_token(endpoint_of(request)):
                return None
            return self._principal(method, Role.READER, context)

        return _async_wrapper(check)


def _async_wrapper(
    check: Callable[[Any, Any], Principal | None],
) -> Callable[[Callable[..., Any], bool], Any]:
    """Runs ``check(context, request)`` (request ``None`` for request streams) first."""

    def wrap(behavior: Callable[..., Any], streams: bool) -> Any:
        if inspect.isasyncgenfunction(behavior) or streams:

            async def checked_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                single = request if _is_message(request) else None
                token = set_principal(check(context, single))
                try:
                    result = behavior(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                    async for item in result:
                        yield item
                finally:
                    _reset_quietly(token)

            return checked_stream

        async def checked(request: Any, context: Any) -> Any:
            single = request if _is_message(request) else None
            token = set_principal(check(context, single))
            try:
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                return result
            finally:
                _reset_quietly(token)

        return checked

    return wrap


def _is_message(request: Any) -> bool:
    # A request stream arrives as an async iterator, a unary request as a message.
    return hasattr(request, "SerializeToString")
