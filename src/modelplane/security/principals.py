"""Roles and the authenticated caller."""

from __future__ import annotations

import enum
from contextvars import ContextVar
from dataclasses import dataclass


class Role(enum.IntEnum):
    """Ordered: a role may call everything a lower one may.

    ``ANYONE`` marks methods that need no credentials at all (health probes).
    """

    ANYONE = 0
    READER = 1
    DEPLOYER = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            role = cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"role: expected one of reader, deployer, admin, got {text!r}"
            ) from None
        if role is cls.ANYONE:
            raise ValueError("role: a credential must carry reader, deployer or admin")
        return role

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its name is what the audit trail records."""

    name: str
    role: Role
    via: str = "token"

    def may(self, required: Role) -> bool:
        return self.role >= required


_current: ContextVar[Principal | None] = ContextVar("modelplane_principal", default=None)


def current_principal() -> Principal | None:
    """The caller the auth interceptor authenticated for this request, if auth is on."""
    return _current.get()


def set_principal(principal: Principal | None) -> object:
    return _current.set(principal)


def reset_principal(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
