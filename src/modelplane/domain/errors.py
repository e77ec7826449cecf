"""The one exception hierarchy of modelplane.

Every error a client can see is a ``ModelplaneError`` carrying an ``ErrorCode``;
a server interceptor maps the code to a gRPC status and sends only the message,
never a stack trace::

    ModelplaneError
    ├── InvalidArgument        malformed request, wrong dtype/shape, bad weights, not ONNX
    ├── NotFound               unknown model / version / endpoint / alias
    ├── AlreadyExists          create of a model that exists
    ├── FailedPrecondition     version not ready, delete of a referenced version
    ├── Aborted                stale revision in a compare-and-set
    ├── ResourceExhausted      over a size, rate or concurrency limit
    ├── Unavailable            Redis unreachable for a write
    ├── DataLoss               artifact hash mismatch
    ├── Unauthenticated        missing or bad credentials
    ├── PermissionDenied       role too low
    ├── DeadlineExceeded       the server-side deadline of a request passed
    └── Internal               a bug: logged in full on the server, terse to the client
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Mirrors the gRPC status names so the mapping is by name, not by table."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


class ModelplaneError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ModelplaneError):
    code = ErrorCode.INVALID_ARGUMENT


class NotFound(ModelplaneError):
    code = ErrorCode.NOT_FOUND


class AlreadyExists(ModelplaneError):
    code = ErrorCode.ALREADY_EXISTS


class FailedPrecondition(ModelplaneError):
    code = ErrorCode.FAILED_PRECONDITION


class Aborted(ModelplaneError):
    code = ErrorCode.ABORTED


class ResourceExhausted(ModelplaneError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class Unavailable(ModelplaneError):
    code = ErrorCode.UNAVAILABLE


class DataLoss(ModelplaneError):
    code = ErrorCode.DATA_LOSS


class Unauthenticated(ModelplaneError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(ModelplaneError):
    code = ErrorCode.PERMISSION_DENIED


class DeadlineExceeded(ModelplaneError):
    code = ErrorCode.DEADLINE_EXCEEDED


class Internal(ModelplaneError):
    code = ErrorCode.INTERNAL
