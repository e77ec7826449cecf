"""Subscriptions and the delivery log on Redis, under the registry's prefix.

Keys::

    webhooks                      hash: subscription id -> JSON {url, events, secret, created_at_ms}
    webhook_deliveries:<id>       list of JSON delivery attempts, the last 10,000 kept
    webhook_delivered             set of delivery ids that reached their receiver
    webhook_cursor                the last audit-stream id the dispatcher handled

Creating and deleting a subscription appends its audit event in the same
MULTI/EXEC step (without the secret).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import redis

from modelplane.domain.errors import NotFound, Unavailable
from modelplane.domain.webhooks import Delivery, Subscription
from modelplane.registry import audit_context

MAX_LOG = 10_000


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise Unavailable(f"the webhook store is unreachable: {error}") from None


class WebhookStore:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _audit(self, pipe: Any, action: str, subscription: Subscription) -> None:
        context = audit_context.current()
        public = {"id": subscription.id, "url": subscription.url,
                  "events": list(subscription.events)}
        generation = self._redis.get(self.key("generation")) or b"0"
        pipe.xadd(self.key("audit"), {
            "action": action, "subject": f"webhook/{subscription.id}",
            "detail": json.dumps(public), "ts_ms": int(time.time() * 1000),
            "generation": generation, "actor": context.actor, "reason": context.reason,
            "before": "", "after": json.dumps(public), "model": "", "endpoint": "",
        })

    def add(self, subscription: Subscription) -> Subscription:
        record = json.dumps({
            "url": subscription.url, "events": list(subscription.events),
            "secret": subscription.secret, "created_at_ms": subscription.created_at_ms,
        })
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self.key("webhooks"), subscription.id, record)
            self._audit(pipe, "subscribe_webhook", subscription)
            pipe.execute()
        return subscription

    def remove(self, subscription_id: str) -> None:
        found = self.get(subscription_id)
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self.key("webhooks"), subscription_id)
            self._audit(pipe, "unsubscribe_webhook", found)
            pipe.execute()

    def get(self, subscription_id: str) -> Subscription:
        with _reachable():
            raw = _text(self._redis.hget(self.key("webhooks"), subscription_id))
        if raw is None:
            raise NotFound(f"webhook subscription '{subscription_id}' not found")
        return _subscription(subscription_id, raw)

    def all(self) -> list[Subscription]:
        with _reachable():
            stored = _text(self._redis.hgetall(self.key("webhooks")))
        return sorted((_subscription(i, raw) for i, raw in stored.items()),
                      key=lambda s: (s.created_at_ms, s.id))

    def log(self, delivery: Delivery) -> None:
        key = self.key("webhook_deliveries", delivery.subscription_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(delivery.__dict__))
        pipe.ltrim(key, -MAX_LOG, -1)
        if delivery.delivered:
            pipe.sadd(self.key("webhook_delivered"), delivery.delivery_id)
        pipe.execute()

    def was_delivered(self, delivery_id: str) -> bool:
        return bool(self._redis.sismember(self.key("webhook_delivered"), delivery_id))

    def deliveries(self, subscription_id: str, limit: int = 0) -> list[Delivery]:
        self.get(subscription_id)
        with _reachable():
            rows = _text(self._redis.lrange(
                self.key("webhook_deliveries", subscription_id), -limit if limit > 0 else 0, -1
            ))
        return [Delivery(**json.loads(row)) for row in rows]

    def cursor(self) -> str | None:
        value = _text(self._redis.get(self.key("webhook_cursor")))
        return None if value is None else str(value)

    def read_audit(self, after: str, count: int, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        """Audit entries after ``after``, waiting up to ``block_ms`` for the first."""
        batch = _text(self._redis.xread({self.key("audit"): after}, count=count, block=block_ms))
        return [(str(i), fields) for _stream, entries in batch or [] for i, fields in entries]

    def set_cursor(self, stream_id: str) -> None:
        self._redis.set(self.key("webhook_cursor"), stream_id)

    def latest_audit_id(self) -> str:
        newest = _text(self._redis.xrevrange(self.key("audit"), count=1))
        return str(newest[0][0]) if newest else "0-0"


def _subscription(subscription_id: str, raw: str) -> Subscription:
    fields = json.loads(raw)
    return Subscription(
        id=subscription_id, url=fields["url"], events=tuple(fields["events"]),
        created_at_ms=fields["created_at_ms"], secret=fields["secret"],
    )
