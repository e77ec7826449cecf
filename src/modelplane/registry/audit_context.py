"""Who is making the current change, and why: carried to the audit stream.

The store's methods keep their signatures; the caller identity and reason are
set once per request by the servicer (``acting_as``) and read by the store
when it appends the audit event. A ``ContextVar`` keeps concurrent requests on
the server's thread pool apart.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

ANONYMOUS = "anonymous"
MAX_ACTOR = 128
MAX_REASON = 1024
_ACTOR = re.compile(r"[A-Za-z0-9._@:/+-]{1,128}")


@dataclass(frozen=True)
class AuditContext:
    actor: str = ANONYMOUS
    reason: str = ""


_DEFAULT = AuditContext()
_current: ContextVar[AuditContext | None] = ContextVar("modelplane_audit", default=None)


def current() -> AuditContext:
    return _current.get() or _DEFAULT


def clean_actor(actor: str) -> str:
    """An identity safe to store and print; anything odd becomes ``anonymous``."""
    actor = actor.strip()
    return actor if _ACTOR.fullmatch(actor) else ANONYMOUS


def clean_reason(reason: str) -> str:
    # Printable only and bounded: the reason ends up in tables and terminals.
    text = "".join(ch if ch.isprintable() else " " for ch in reason)
    return text[:MAX_REASON]


@contextlib.contextmanager
def acting_as(actor: str, reason: str = "") -> Iterator[AuditContext]:
    context = AuditContext(clean_actor(actor) if actor else ANONYMOUS, clean_reason(reason))
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
