"""Make-before-break handshake and per-replica reports, through Redis.

Before a route change is written, the control plane asks every replica to
load the versions the new route needs (``request``): the wanted versions go
into ``<prefix>:preload`` (hash "model:version" -> expiry ms) and a message on
the changes channel makes every replica resync. A replica loads them and
acknowledges in its heartbeat, whose ``loaded`` list the control plane waits
on (``wait_loaded``). Only then does the route flip; entries expire on their
own, by which time the route itself keeps the versions loaded.

A replica that cannot load a version says so under
``<prefix>:load_failed:<replica id>`` (JSON list, short TTL), so the wait ends
at once instead of at its timeout. Replicas also publish their
shadow-comparison books under ``<prefix>:shadow_book:<replica id>`` (short TTL,
refreshed with each heartbeat).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from modelplane.domain.errors import Unavailable
from modelplane.domain.models import VersionKey
from modelplane.registry.replicas import ReplicaDirectory, ReplicaStatus

_POLL_S = 0.01


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RoutePreparation:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock

    @property
    def _preload_key(self) -> str:
        return f"{self._prefix}:preload"

    def _failed_key(self, replica_id: str) -> str:
        return f"{self._prefix}:load_failed:{replica_id}"

    def _book_key(self, replica_id: str) -> str:
        return f"{self._prefix}:shadow_book:{replica_id}"

    # ------------------------------------------------------- control plane side

    def request(self, keys: Iterable[VersionKey], ttl_s: float = 60.0) -> None:
        """Asks every replica to load ``keys``; they resync on the published message."""
        expiry = int((self._clock() + ttl_s) * 1000)
        mapping = {str(key): expiry for key in keys}
        if not mapping:
            return
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._preload_key, mapping=mapping)  # type: ignore[arg-type]
            message = json.dumps({"kind": "preload", "name": "", "generation": 0})
            pipe.publish(f"{self._prefix}:changes", message)
            pipe.execute()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise Unavailable(f"registry store unreachable: {error}") from error

    def forget(self, keys: Iterable[VersionKey]) -> None:
        """Withdraws load requests (a version just retired): replicas may unload it."""
        names = [str(key) for key in keys]
        if not names:
            return
        try:
            self._redis.hdel(self._preload_key, *names)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise Unavailable(f"registry store unreachable: {error}") from error

    def wait_loaded(
        self,
        directory: ReplicaDirectory,
        keys: Iterable[VersionKey],
        timeout_s: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[ReplicaStatus]:
        """Waits until every live replica reports ``keys`` loaded; returns those that did not.

        Empty when all acknowledged (or no replica is live: nobody to wait for).
        A replica that reported a failed load for a missing key is not waited for
        any longer, but it is returned.
        """
        wanted = {str(key) for key in keys}
        deadline = time.monotonic() + timeout_s
        while True:
            lagging = [s for s in directory.live() if not wanted.issubset(s.loaded)]
            if not lagging or time.monotonic() >= deadline:
                return lagging
            failed = self.failures([s.replica_id for s in lagging])
            if all(wanted.difference(s.loaded) <= failed.get(s.replica_id, set()) for s in lagging):
                return lagging
            sleep(_POLL_S)

    def failures(self, replica_ids: list[str]) -> dict[str, set[str]]:
        """The "model:version" keys each replica last failed to load."""
        if not replica_ids:
            return {}
        try:
            values = self._redis.mget([self._failed_key(rid) for rid in replica_ids])
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise Unavailable(f"registry store unreachable: {error}") from error
        return {
            rid: {str(key) for key in json.loads(_text(value))}
            for rid, value in zip(replica_ids, values, strict=True)
            if value is not None
        }

    def publish_failures(self, replica_id: str, keys: Iterable[VersionKey], ttl_s: float) -> None:
        names = sorted(str(key) for key in keys)
        if names:
            self._redis.set(self._failed_key(replica_id), json.dumps(names), px=int(ttl_s * 1000))
        else:
            self._redis.delete(self._failed_key(replica_id))

    # ------------------------------------------------------------- replica side

    def pending(self) -> set[VersionKey]:
        """Versions replicas are asked to hold loaded right now; drops expired entries."""
        stored = self._redis.hgetall(self._preload_key)
        entries = {_text(k): int(_text(v)) for k, v in stored.items()}
        now = int(self._clock() * 1000)
        expired = [name for name, expiry in entries.items() if expiry <= now]
        if expired:
            self._redis.hdel(self._preload_key, *expired)
        wanted = set()
        for name, expiry in entries.items():
            if expiry > now:
                model, _, number = name.rpartition(":")
                wanted.add(VersionKey(model, int(number)))
        return wanted

    def publish_book(self, replica_id: str, book_json: str, ttl_s: float) -> None:
        self._redis.set(self._book_key(replica_id), book_json, px=max(1, int(ttl_s * 1000)))

    def books(self, replica_ids: Iterable[str]) -> list[str]:
        ids = list(replica_ids)
        if not ids:
            return []
        try:
            values = self._redis.mget([self._book_key(rid) for rid in ids])
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise Unavailable(f"registry store unreachable: {error}") from error
        return [_text(value) for value in values if value is not None]
