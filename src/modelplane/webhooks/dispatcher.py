"""Delivers audit events to subscribers: signed POSTs, retried with backoff, logged.

One thread tails the audit stream from a cursor kept in Redis, so a restarted
control plane resumes where it stopped. For each event and each matching
subscription it POSTs the JSON payload; a non-2xx answer or a network error is
retried with exponential backoff up to ``max_attempts``. The delivery id is the
same on every attempt (``<subscription>-<audit id>``) and a delivery that
succeeded is never sent again. Redirects are not followed and the target is
re-checked before every attempt: a receiver cannot bounce a delivery to an
internal address. Deliveries are sequential; a slow receiver delays the others
by at most ``max_attempts * timeout_s`` plus the backoff.
"""

from __future__ import annotations

import http.client
import logging
import secrets
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import redis

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import AuditEvent
from modelplane.domain.webhooks import Delivery, Subscription
from modelplane.webhooks.events import event_type, payload
from modelplane.webhooks.signing import SIGNATURE_HEADER, sign
from modelplane.webhooks.store import WebhookStore
from modelplane.webhooks.targets import TargetPolicy

_log = logging.getLogger(__name__)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _event(event_id: str, fields: dict[str, str]) -> AuditEvent:
    return AuditEvent(
        event_id=event_id, ts_ms=int(fields.get("ts_ms", 0) or 0),
        generation=int(fields.get("generation", 0) or 0), action=fields.get("action", ""),
        subject=fields.get("subject", ""), actor=fields.get("actor", ""),
        reason=fields.get("reason", ""), before_json=fields.get("before", ""),
        after_json=fields.get("after", ""), detail_json=fields.get("detail", ""),
        model=fields.get("model", ""), endpoint=fields.get("endpoint", ""),
    )


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    """One POST without following redirects; the HTTP status."""
    parts = urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                                 timeout=timeout_s)
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                timeout=timeout_s)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)
        return response.status
    finally:
        connection.close()


class Dispatcher:
    def __init__(
        self,
        store: WebhookStore,
        policy: TargetPolicy,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        sender: Callable[[str, bytes, dict[str, str], float], int] = post,
    ) -> None:
        self.store = store
        self.policy = policy
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._send = sender
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.store.cursor() is None:
            # Nothing before the first start was subscribed to.
            self.store.set_cursor(self.store.latest_audit_id())
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                cursor = self.store.cursor() or "0-0"
                for event_id, fields in self.store.read_audit(cursor, 100, 500):
                    if self._stop.is_set():
                        return
                    self.handle(_event(event_id, fields))
                    self.store.set_cursor(event_id)
            except redis.RedisError as error:
                _log.warning("webhooks: the audit stream is unreachable (%s); retrying", error)
                self._stop.wait(1.0)

    def handle(self, event: AuditEvent) -> None:
        kind = event_type(event)
        if not kind:
            return
        for subscription in self.store.all():
            if subscription.events and kind not in subscription.events:
                continue
            if event.ts_ms and event.ts_ms < subscription.created_at_ms:
                continue
            self.deliver(subscription, event, kind)

    def deliver(self, subscription: Subscription, event: AuditEvent, kind: str) -> bool:
        delivery_id = f"{subscription.id}-{event.event_id}"
        if self.store.was_delivered(delivery_id):
            return True
        body = payload(event, kind, delivery_id)
        for attempt in range(1, self.max_attempts + 1):
            status, error = 0, ""
            try:
                self.policy.check(subscription.url)
                now = int(self._clock())
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "modelplane-webhooks",
                    "X-Modelplane-Event": kind,
                    "X-Modelplane-Delivery": delivery_id,
                    SIGNATURE_HEADER: sign(subscription.secret, now, body),
                }
                status = self._send(subscription.url, body, headers, self.timeout_s)
            except InvalidArgument as refused:
                error = refused.message
            except (OSError, http.client.HTTPException) as failed:
                error = f"{type(failed).__name__}: {failed}"
            delivered = 200 <= status < 300
            if not delivered and not error:
                error = f"HTTP {status}"
            self.store.log(Delivery(
                delivery_id=delivery_id, subscription_id=subscription.id, event=kind,
                attempt=attempt, status_code=status, error=error,
                at_ms=int(self._clock() * 1000), delivered=delivered,
            ))
            if delivered:
                return True
            if error.startswith("url:") or self._stop.is_set():
                # The target is no longer allowed: retrying cannot help.
                return False
            self._stop.wait(self.backoff_s * 2 ** (attempt - 1))
        return False
