"""Webhook subscriptions and delivery attempts as immutable dataclasses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    # Event types; empty means every event.
    events: tuple[str, ...]
    created_at_ms: int
    secret: str = ""


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    subscription_id: str
    event: str
    attempt: int
    status_code: int
    error: str
    at_ms: int
    delivered: bool
