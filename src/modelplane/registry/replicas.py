"""Which serving replicas are alive and which registry generation each serves.

Each replica refreshes a key of its own with a short TTL; a replica that dies
simply stops refreshing and drops out. The control plane reads the directory
to know when a change is live everywhere (make-before-break: a replica loads
the versions a change needs before it reports the change's generation).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from modelplane.domain.errors import Unavailable

_POLL_S = 0.01


@dataclass(frozen=True)
class ReplicaStatus:
    replica_id: str
    generation: int
    address: str
    node: str
    # "model:version" keys of the versions the replica has loaded.
    loaded: tuple[str, ...]
    reported_at_ms: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        raise Unavailable(f"replica directory unreachable: {error}") from error


class ReplicaDirectory:
    """Heartbeats under ``<prefix>:replica:<id>`` plus the set ``<prefix>:replicas``."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock = clock
        self._sleep = sleep

    @property
    def client(self) -> redis.Redis:
        return self._redis

    @property
    def prefix(self) -> str:
        return self._prefix

    def _key(self, replica_id: str) -> str:
        return f"{self._prefix}:replica:{replica_id}"

    @property
    def _ids_key(self) -> str:
        return f"{self._prefix}:replicas"

    def heartbeat(
        self,
        replica_id: str,
        generation: int,
        address: str,
        node: str,
        loaded: list[str],
        ttl_s: float = 5.0,
    ) -> None:
        status = {
            "generation": generation,
            "address": address,
            "node": node,
            "loaded": list(loaded),
            "reported_at_ms": int(self._clock() * 1000),
        }
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(self._key(replica_id), json.dumps(status), px=max(1, int(ttl_s * 1000)))
            pipe.sadd(self._ids_key, replica_id)
            pipe.execute()

    def live(self) -> list[ReplicaStatus]:
        """Replicas whose heartbeat has not expired, sorted by id."""
        with _reachable():
            ids = sorted(_text(member) for member in self._redis.smembers(self._ids_key))
            if not ids:
                return []
            values = self._redis.mget([self._key(replica_id) for replica_id in ids])
            expired = [rid for rid, value in zip(ids, values, strict=True) if value is None]
            if expired:
                # The TTL removed the heartbeat; drop the id too so the set stays small.
                self._redis.srem(self._ids_key, *expired)
        statuses = []
        for replica_id, value in zip(ids, values, strict=True):
            if value is None:
                continue
            data = json.loads(value)
            statuses.append(
                ReplicaStatus(
                    replica_id=replica_id,
                    generation=int(data["generation"]),
                    address=str(data["address"]),
                    node=str(data["node"]),
                    loaded=tuple(str(key) for key in data["loaded"]),
                    reported_at_ms=int(data["reported_at_ms"]),
                )
            )
        return statuses

    def wait_for_generation(self, generation: int, timeout_s: float) -> bool:
        """True once every live replica reports ``generation`` or later.

        True at once when no replica is live: there is nobody to wait for.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if all(status.generation >= generation for status in self.live()):
                return True
            if time.monotonic() >= deadline:
                return False
            self._sleep(_POLL_S)

    def remove(self, replica_id: str) -> None:
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(self._key(replica_id))
            pipe.srem(self._ids_key, replica_id)
            pipe.execute()
