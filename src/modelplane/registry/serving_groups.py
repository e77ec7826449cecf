"""Serving groups in Redis: each group's port and scale, and which endpoints it serves.

``<prefix>:sgroups`` maps a group name to its JSON record; ``<prefix>:sgroup_of``
maps an endpoint to its group (absent: the default group). Both change in one
MULTI/EXEC so a reader never sees an endpoint assigned to a group that is not there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from modelplane.domain.errors import Unavailable
from modelplane.domain.scaling import DEFAULT_GROUP, Autoscaling, ServingGroup


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        raise Unavailable(f"serving groups unreachable: {error}") from error


def _record(group: ServingGroup) -> str:
    auto = group.autoscaling
    return json.dumps(
        {
            "port": group.inference_port,
            "replicas": group.replicas,
            "autoscaling": None
            if auto is None
            else [auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests],
        }
    )


def _group(name: str, record: str, endpoints: tuple[str, ...]) -> ServingGroup:
    data = json.loads(record)
    auto = data.get("autoscaling")
    return ServingGroup(
        name=name,
        inference_port=int(data["port"]),
        replicas=int(data["replicas"]),
        autoscaling=None if auto is None else Autoscaling(int(auto[0]), int(auto[1]), auto[2]),
        endpoints=endpoints,
    )


class ServingGroupStore:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._groups_key = f"{prefix}:sgroups"
        self._assign_key = f"{prefix}:sgroup_of"

    def _assignments(self) -> dict[str, str]:
        raw = self._redis.hgetall(self._assign_key)
        return {_text(k): _text(v) for k, v in raw.items()}

    def list(self) -> list[ServingGroup]:
        with _reachable():
            records = {_text(k): _text(v) for k, v in self._redis.hgetall(self._groups_key).items()}
            assignments = self._assignments()
        groups = []
        for name in sorted(records):
            endpoints = tuple(sorted(e for e, g in assignments.items() if g == name))
            groups.append(_group(name, records[name], endpoints))
        return groups

    def get(self, name: str) -> ServingGroup | None:
        return next((g for g in self.list() if g.name == name), None)

    def group_of(self, endpoint: str) -> str:
        with _reachable():
            value = self._redis.hget(self._assign_key, endpoint)
        return DEFAULT_GROUP if value is None else _text(value)

    def put(self, group: ServingGroup, assign: tuple[str, ...] = ()) -> None:
        """Stores the group's record and moves ``assign`` endpoints into it, atomically."""
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._groups_key, group.name, _record(group))
            for endpoint in assign:
                if group.name == DEFAULT_GROUP:
                    pipe.hdel(self._assign_key, endpoint)
                else:
                    pipe.hset(self._assign_key, endpoint, group.name)
            pipe.execute()

    def ensure(self, group: ServingGroup) -> ServingGroup:
        """The stored group of that name, storing ``group`` first if there is none."""
        with _reachable():
            self._redis.hsetnx(self._groups_key, group.name, _record(group))
        stored = self.get(group.name)
        if stored is None:  # deleted between the two calls by hand
            raise Unavailable(f"serving group {group.name!r} vanished while being read")
        return stored
