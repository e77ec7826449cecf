"""WebhookService over gRPC: decode, call the use case, encode."""

from __future__ import annotations

import grpc
import redis

from modelplane.codec.webhooks import delivery_to_proto, subscription_to_proto
from modelplane.control.caller import caller
from modelplane.v1 import webhooks_pb2, webhooks_pb2_grpc
from modelplane.webhooks.dispatcher import Dispatcher
from modelplane.webhooks.store import WebhookStore
from modelplane.webhooks.targets import TargetPolicy
from modelplane.webhooks.use_cases import Webhooks

WEBHOOK_SERVICE_NAME = webhooks_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name


class WebhookServicer(webhooks_pb2_grpc.WebhookServiceServicer):
    def __init__(self, webhooks: Webhooks) -> None:
        self._webhooks = webhooks

    def CreateSubscription(
        self, request: webhooks_pb2.CreateSubscriptionRequest, context: grpc.ServicerContext
    ) -> webhooks_pb2.Subscription:
        with caller(context):
            created = self._webhooks.subscribe(request.url, list(request.events), request.secret)
        return subscription_to_proto(created, with_secret=True)

    def ListSubscriptions(
        self, request: webhooks_pb2.ListSubscriptionsRequest, context: grpc.ServicerContext
    ) -> webhooks_pb2.ListSubscriptionsResponse:
        return webhooks_pb2.ListSubscriptionsResponse(
            subscriptions=[subscription_to_proto(s) for s in self._webhooks.subscriptions()]
        )

    def DeleteSubscription(
        self, request: webhooks_pb2.DeleteSubscriptionRequest, context: grpc.ServicerContext
    ) -> webhooks_pb2.DeleteSubscriptionResponse:
        with caller(context):
            self._webhooks.unsubscribe(request.id)
        return webhooks_pb2.DeleteSubscriptionResponse()

    def ListDeliveries(
        self, request: webhooks_pb2.ListDeliveriesRequest, context: grpc.ServicerContext
    ) -> webhooks_pb2.ListDeliveriesResponse:
        found = self._webhooks.deliveries(request.subscription_id, request.limit)
        return webhooks_pb2.ListDeliveriesResponse(
            deliveries=[delivery_to_proto(d) for d in found]
        )


def add_webhook_services(
    server: grpc.Server, client: redis.Redis, prefix: str, policy: TargetPolicy
) -> Dispatcher:
    """Registers the service; the caller starts and stops the returned dispatcher."""
    store = WebhookStore(client, prefix)
    webhooks_pb2_grpc.add_WebhookServiceServicer_to_server(
        WebhookServicer(Webhooks(store, policy)), server
    )
    return Dispatcher(store, policy)
