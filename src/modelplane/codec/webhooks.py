"""Webhook subscriptions and deliveries <-> ``modelplane.v1`` webhook messages."""

from __future__ import annotations

from modelplane.codec.registry import timestamp_from_ms, timestamp_to_ms
from modelplane.domain.webhooks import Delivery, Subscription
from modelplane.v1 import webhooks_pb2


def subscription_to_proto(
    subscription: Subscription, with_secret: bool = False
) -> webhooks_pb2.Subscription:
    return webhooks_pb2.Subscription(
        id=subscription.id,
        url=subscription.url,
        events=list(subscription.events),
        created_at=timestamp_from_ms(subscription.created_at_ms),
        # The secret leaves the server once, in the answer to its creation.
        secret=subscription.secret if with_secret else "",
    )


def subscription_from_proto(message: webhooks_pb2.Subscription) -> Subscription:
    return Subscription(
        id=message.id,
        url=message.url,
        events=tuple(message.events),
        created_at_ms=timestamp_to_ms(message.created_at),
        secret=message.secret,
    )


def delivery_to_proto(delivery: Delivery) -> webhooks_pb2.Delivery:
    return webhooks_pb2.Delivery(
        delivery_id=delivery.delivery_id,
        subscription_id=delivery.subscription_id,
        event=delivery.event,
        attempt=delivery.attempt,
        status_code=delivery.status_code,
        error=delivery.error,
        at=timestamp_from_ms(delivery.at_ms),
        delivered=delivery.delivered,
    )


def delivery_from_proto(message: webhooks_pb2.Delivery) -> Delivery:
    return Delivery(
        delivery_id=message.delivery_id,
        subscription_id=message.subscription_id,
        event=message.event,
        attempt=message.attempt,
        status_code=message.status_code,
        error=message.error,
        at_ms=timestamp_to_ms(message.at),
        delivered=message.delivered,
    )
