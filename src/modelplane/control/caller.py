"""The caller of a control-plane request, as recorded in the audit trail.

With authentication on, the identity is the principal the auth interceptor
authenticated, and a client-supplied ``x-modelplane-actor`` is ignored (a caller
must not be able to write someone else's name into the audit trail). With it
off, the identity is what the client declares in ``x-modelplane-actor`` (default
``anonymous``). The reason is ``x-modelplane-reason``; both are cleaned before
they are stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from modelplane.registry.audit_context import ANONYMOUS, AuditContext, acting_as
from modelplane.security.principals import current_principal

ACTOR_HEADER = "x-modelplane-actor"
REASON_HEADER = "x-modelplane-reason"


@contextmanager
def caller(context: grpc.ServicerContext) -> Iterator[AuditContext]:
    """Makes the request's actor and reason current for the audit events it causes."""
    metadata = {key: value for key, value in (context.invocation_metadata() or ())}
    principal = current_principal()
    actor = principal.name if principal is not None else metadata.get(ACTOR_HEADER, ANONYMOUS)
    reason = metadata.get(REASON_HEADER, "")
    with acting_as(
        actor if isinstance(actor, str) else ANONYMOUS,
        reason if isinstance(reason, str) else "",
    ) as audit:
        yield audit
