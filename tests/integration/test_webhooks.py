"""Webhooks to a local HTTP receiver: signed, retried after a failure, never duplicated."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis

from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.registry_wiring import add_registry_services
from modelplane.control.webhooks_servicer import add_webhook_services
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model
from modelplane.v1 import webhooks_pb2, webhooks_pb2_grpc
from modelplane.webhooks.signing import verify
from modelplane.webhooks.targets import TargetPolicy
from tests.integration.webhook_receiver import Receiver, running_receiver, wait_for

pytestmark = pytest.mark.integration
SECRET = "s3cret-s3cret-s3cret"


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with running_receiver("/hooks/retrain", fail_first=1) as state:
        yield state


@dataclass
class Plane:
    stub: webhooks_pb2_grpc.WebhookServiceStub
    registry: Registry
    dispatcher: object


@pytest.fixture()
def plane(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Plane]:
    registry = Registry(
        RedisRegistryStore.from_url(redis_url, key_prefix), ArtifactStore(tmp_path / "a")
    )
    raw = redis.Redis.from_url(redis_url)
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[ErrorInterceptor()])
    add_registry_services(server, registry)
    # The receiver runs on loopback: allowed explicitly, as an operator would.
    dispatcher = add_webhook_services(server, raw, key_prefix, TargetPolicy(allow_private=True))
    dispatcher.backoff_s = 0.05
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    dispatcher.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Plane(webhooks_pb2_grpc.WebhookServiceStub(channel), registry, dispatcher)
    finally:
        dispatcher.stop()
        channel.close()
        server.stop(None)
        raw.close()


def test_signed_retried_deduplicated_and_logged(plane: Plane, receiver: Receiver) -> None:
    created = plane.stub.CreateSubscription(
        webhooks_pb2.CreateSubscriptionRequest(
            url=receiver.url, events=["version.registered", "version.ready", "alias.moved"],
            secret=SECRET,
        ),
        metadata=(("x-modelplane-actor", "mlops"),),
    )
    assert created.secret == SECRET
    listed = plane.stub.ListSubscriptions(webhooks_pb2.ListSubscriptionsRequest()).subscriptions
    assert [(s.id, s.secret) for s in listed] == [(created.id, "")]  # never shown again

    plane.registry.register_version("fraud", "", True, [linear_model(seed=1)])
    plane.registry.set_alias("fraud", "champion", 1)

    wait_for(lambda: len(receiver.accepted()) == 3)
    time.sleep(0.5)  # nothing else may arrive
    ok = receiver.accepted()
    assert [d.event for d in ok] == ["version.registered", "version.ready", "alias.moved"]
    ids = [d.delivery_id for d in ok]
    assert len(set(ids)) == 3
    # The first POST failed (500) and was retried under the same delivery id.
    every = receiver.received()
    assert (every[0].delivery_id, every[0].status) == (ids[0], 500)
    assert len(every) == 4
    now = int(time.time())
    for delivery in every:
        assert verify(SECRET, delivery.signature, delivery.body, now)
        assert not verify("another-secret-value", delivery.signature, delivery.body, now)
        assert json.loads(delivery.body)["delivery_id"] == delivery.delivery_id
    assert json.loads(ok[2].body)["after"]["version"] == 1

    log = plane.stub.ListDeliveries(
        webhooks_pb2.ListDeliveriesRequest(subscription_id=created.id)
    ).deliveries
    assert [(d.event, d.attempt, d.status_code, d.delivered, d.error) for d in log] == [
        ("version.registered", 1, 500, False, "HTTP 500"),
        ("version.registered", 2, 200, True, ""),
        ("version.ready", 1, 200, True, ""),
        ("alias.moved", 1, 200, True, ""),
    ]

    # A restarted dispatcher resumes from its cursor: nothing is delivered twice.
    plane.dispatcher.stop()  # type: ignore[attr-defined]
    plane.dispatcher.start()  # type: ignore[attr-defined]
    time.sleep(1.0)
    assert len(receiver.received()) == 4


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://169.254.169.254/latest/meta-data/",
         "url: host '169.254.169.254' resolves to 169.254.169.254, a cloud metadata address"),
        ("http://[fe80::1]/hook", "url: host 'fe80::1' resolves to fe80::1, a link-local address"),
        ("file:///etc/passwd", "url: expected an http:// or https:// URL, got 'file:///etc/passwd'"),
        ("http://user:pw@example.com/", "url: credentials in the URL are not accepted"),
    ],
)
def test_forgery_targets_are_refused_even_when_private_is_allowed(
    plane: Plane, url: str, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        plane.stub.CreateSubscription(webhooks_pb2.CreateSubscriptionRequest(url=url))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(message)


def test_loopback_and_private_are_refused_by_default() -> None:
    policy = TargetPolicy()
    from modelplane.domain.errors import InvalidArgument

    for url, kind in (("http://127.0.0.1:8080/", "loopback"), ("http://10.1.2.3/", "private"),
                      ("http://localhost/", "loopback")):
        with pytest.raises(InvalidArgument) as caught:
            policy.check(url)
        assert f"a {kind} address" in caught.value.message
    public = TargetPolicy(resolver=lambda host, port: ["93.184.215.14"])
    assert public.check("https://hooks.example.com/x") == "https://hooks.example.com/x"
    assert TargetPolicy(allowed_hosts=("ci.internal",)).check("http://ci.internal/") == (
        "http://ci.internal/"
    )
