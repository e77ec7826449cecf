"""Subscribing to webhooks: validation in one place for the servicer and the CLI."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.webhooks import Delivery, Subscription
from modelplane.webhooks.dispatcher import new_secret
from modelplane.webhooks.events import EVENT_TYPES
from modelplane.webhooks.store import WebhookStore
from modelplane.webhooks.targets import TargetPolicy

MAX_SUBSCRIPTIONS = 1000


class Webhooks:
    def __init__(
        self, store: WebhookStore, policy: TargetPolicy, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.policy = policy
        self._clock = clock

    def subscribe(self, url: str, events: Sequence[str], secret: str = "") -> Subscription:
        self.policy.check(url)
        for i, kind in enumerate(events):
            if kind not in EVENT_TYPES:
                raise InvalidArgument(
                    f"events[{i}]: unknown event {kind!r:.80}; expected one of "
                    + ", ".join(EVENT_TYPES)
                )
        if secret and not 16 <= len(secret) <= 256:
            raise InvalidArgument("secret: expected 16-256 characters (or empty to generate one)")
        if len(self.store.all()) >= MAX_SUBSCRIPTIONS:
            raise InvalidArgument(f"url: at most {MAX_SUBSCRIPTIONS} subscriptions")
        subscription = Subscription(
            id=uuid.uuid4().hex[:16], url=url, events=tuple(dict.fromkeys(events)),
            created_at_ms=int(self._clock() * 1000), secret=secret or new_secret(),
        )
        return self.store.add(subscription)

    def unsubscribe(self, subscription_id: str) -> None:
        self.store.remove(subscription_id)

    def subscriptions(self) -> list[Subscription]:
        return self.store.all()

    def deliveries(self, subscription_id: str, limit: int = 0) -> list[Delivery]:
        if limit < 0:
            raise InvalidArgument(f"limit: expected >= 0, got {limit}")
        return self.store.deliveries(subscription_id, limit)
