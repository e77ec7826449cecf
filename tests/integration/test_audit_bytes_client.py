"""Audit events read the same through a client that does not decode responses.

The control plane's Redis client returns bytes; XRANGE replies are tuples of
(id, fields), which must be decoded like any other reply.
"""

from __future__ import annotations

import redis

from modelplane.registry.redis_store import RedisRegistryStore


def test_audit_events_decode_with_a_bytes_client(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)  # decode_responses=False, as the control plane
    store = RedisRegistryStore(client, key_prefix)
    store.create_model("audited", "for the audit trail", 1_000)
    events = list(store.audit_events())
    assert len(events) == 1
    event = events[0]
    assert event.action == "create_model"
    assert event.subject == "model/audited"
    assert not event.event_id.startswith("b'")
    client.close()
