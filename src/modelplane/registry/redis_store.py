"""The registry on Redis: every mutation one Lua script, audited and announced.

Keys, all under ``<prefix>:``::

    generation              counter bumped by every mutation
    audit                   stream: action, subject, detail (JSON), ts_ms, generation
    changes                 pub/sub channel: {"kind", "name", "generation"}
    models                  set of model names
    model:<name>            hash: description, created_at_ms, latest_version
    versions:<name>         hash: version number -> JSON record (records.py)
    aliases:<name>          hash: alias -> version number
    routes                  set of endpoint names
    route:<endpoint>        hash: targets (JSON), revision, updated_at_ms

Each mutating script checks its preconditions, writes, appends the audit event,
bumps the generation and publishes, all in one step: no reader ever sees a
change without its audit entry, and no watcher misses a change it could read.
The scripts build per-model key names from the prefix, so they need a single
Redis (or Sentinel-managed primary), not Redis Cluster.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis
from redis.commands.core import Script

from modelplane.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    Internal,
    NotFound,
    Unavailable,
)
from modelplane.domain.models import (
    Alias,
    Model,
    ModelVersion,
    Route,
    RouteTarget,
    ServingSnapshot,
    Signature,
    VersionKey,
)
from modelplane.registry.names import validate_alias, validate_name, validate_version_number
from modelplane.registry.records import (
    targets_from_record,
    targets_record,
    version_from_record,
    version_record,
)
from modelplane.registry.store import RegistryStore

# Bounds the audit stream; approximate trimming keeps XADD O(1).
AUDIT_MAX_LEN = 100_000

# Shared by every script. ARGV[1] is always the key prefix.
_LUA_PRELUDE = f"""
local prefix = ARGV[1]
local function k(...)
  return prefix .. ':' .. table.concat({{...}}, ':')
end
local function emit(kind, name, action, subject, detail, now)
  local gen = redis.call('INCR', k('generation'))
  redis.call('XADD', k('audit'), 'MAXLEN', '~', {AUDIT_MAX_LEN}, '*',
    'action', action, 'subject', subject, 'detail', detail, 'ts_ms', now,
    'generation', gen)
  redis.call('PUBLISH', k('changes'),
    cjson.encode({{kind = kind, name = name, generation = gen}}))
  return gen
end
"""

# ARGV: prefix, name, description, now_ms, detail
_CREATE_MODEL = """
local name, description, now, detail = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('SADD', k('models'), name) == 0 then
  return {'exists'}
end
redis.call('HSET', k('model', name),
  'description', description, 'created_at_ms', now, 'latest_version', 0)
local gen = emit('model', name, 'create_model', 'model/' .. name, detail, now)
return {'ok', gen}
"""

# ARGV: prefix, model, record, detail, now_ms
_ADD_VERSION = """
local model, record, detail, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('SISMEMBER', k('models'), model) == 0 then
  return {'no_model'}
end
local mkey, vkey = k('model', model), k('versions', model)
local n = tonumber(redis.call('HGET', mkey, 'latest_version') or '0') + 1
-- Never reuse a number, even if the counter and the versions ever disagree.
while redis.call('HEXISTS', vkey, tostring(n)) == 1 do
  n = n + 1
end
redis.call('HSET', vkey, tostring(n), record)
redis.call('HSET', mkey, 'latest_version', n)
local d = cjson.decode(detail)
d['version'] = n
local gen = emit('version', model, 'register_version',
  'model/' .. model .. '/version/' .. n, cjson.encode(d), now)
return {'ok', n, gen}
"""

# ARGV: prefix, model, alias, version, now_ms
_SET_ALIAS = """
local model, alias, version, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('SISMEMBER', k('models'), model) == 0 then
  return {'no_model'}
end
if redis.call('HEXISTS', k('versions', model), version) == 0 then
  return {'no_version'}
end
local akey = k('aliases', model)
local previous = redis.call('HGET', akey, alias)
redis.call('HSET', akey, alias, version)
local d = {version = tonumber(version)}
if previous then d['previous'] = tonumber(previous) end
local gen = emit('alias', model, 'set_alias',
  'model/' .. model .. '/alias/' .. alias, cjson.encode(d), now)
return {'ok', gen}
"""

# ARGV: prefix, model, alias, now_ms
_DELETE_ALIAS = """
local model, alias, now = ARGV[2], ARGV[3], ARGV[4]
if redis.call('SISMEMBER', k('models'), model) == 0 then
  return {'no_model'}
end
local akey = k('aliases', model)
local version = redis.call('HGET', akey, alias)
if not version then
  return {'no_alias'}
end
-- A route that still names the alias would stop resolving: refuse.
for _, endpoint in ipairs(redis.call('SMEMBERS', k('routes'))) do
  local targets = redis.call('HGET', k('route', endpoint), 'targets')
  if targets then
    for _, t in ipairs(cjson.decode(targets)) do
      if t['model'] == model and t['alias'] == alias then
        return {'in_use', endpoint}
      end
    end
  end
end
redis.call('HDEL', akey, alias)
local gen = emit('alias', model, 'delete_alias', 'model/' .. model .. '/alias/' .. alias,
  cjson.encode({version = tonumber(version)}), now)
return {'ok', gen}
"""

# ARGV: prefix, endpoint, targets, expected_revision, now_ms, detail,
#       then per target: model, 'v' or 'a', version or alias
_SET_ROUTE = """
local endpoint, targets, expected = ARGV[2], ARGV[3], tonumber(ARGV[4])
local now, detail = ARGV[5], ARGV[6]
local rkey = k('route', endpoint)
local current = tonumber(redis.call('HGET', rkey, 'revision') or '0')
if current ~= expected then
  return {'stale', current}
end
-- Re-checked here, atomically with the write, so a route can never name
-- something that vanished between the caller's checks and this step.
local i = 7
local index = 0
while ARGV[i] do
  local model, kind, ref = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('SISMEMBER', k('models'), model) == 0 then
    return {'no_model', index}
  end
  if kind == 'v' and redis.call('HEXISTS', k('versions', model), ref) == 0 then
    return {'no_version', index}
  end
  if kind == 'a' and redis.call('HEXISTS', k('aliases', model), ref) == 0 then
    return {'no_alias', index}
  end
  i = i + 3
  index = index + 1
end
local revision = current + 1
redis.call('HSET', rkey, 'targets', targets, 'revision', revision, 'updated_at_ms', now)
redis.call('SADD', k('routes'), endpoint)
local gen = emit('route', endpoint, 'set_route', 'endpoint/' .. endpoint, detail, now)
return {'ok', revision, gen}
"""

# ARGV: prefix, endpoint, expected_revision (0: any), now_ms
_DELETE_ROUTE = """
local endpoint, expected, now = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local rkey = k('route', endpoint)
local current = redis.call('HGET', rkey, 'revision')
if not current then
  return {'no_route'}
end
current = tonumber(current)
if expected ~= 0 and current ~= expected then
  return {'stale', current}
end
redis.call('DEL', rkey)
redis.call('SREM', k('routes'), endpoint)
local gen = emit('route', endpoint, 'delete_route', 'endpoint/' .. endpoint,
  cjson.encode({revision = current}), now)
return {'ok', gen}
"""

# Read-only. ARGV: prefix. -> {{name, model hash, aliases hash}, ...}
_LIST_MODELS = """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', k('models'))) do
  out[#out + 1] = {name, redis.call('HGETALL', k('model', name)),
    redis.call('HGETALL', k('aliases', name))}
end
return out
"""

_ROUTES_LUA = """
local function read_routes()
  local routes = {}
  for _, endpoint in ipairs(redis.call('SMEMBERS', k('routes'))) do
    local r = redis.call('HMGET', k('route', endpoint), 'targets', 'revision', 'updated_at_ms')
    if r[1] then
      routes[#routes + 1] = {endpoint, r[1], r[2], r[3]}
    end
  end
  return routes
end
"""

# Read-only. ARGV: prefix. -> {{endpoint, targets, revision, updated_at_ms}, ...}
_LIST_ROUTES = _ROUTES_LUA + "return read_routes()\n"

# Read-only, one consistent view. ARGV: prefix.
# -> {generation, routes, {{model, versions hash, aliases hash}, ...}}
_SNAPSHOT = (
    _ROUTES_LUA
    + """
local models = {}
for _, name in ipairs(redis.call('SMEMBERS', k('models'))) do
  models[#models + 1] = {name, redis.call('HGETALL', k('versions', name)),
    redis.call('HGETALL', k('aliases', name))}
end
return {tonumber(redis.call('GET', k('generation')) or '0'), read_routes(), models}
"""
)


def _text(value: Any) -> Any:
    """Replies as str whether or not the client decodes responses itself."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_text(item) for item in value]
    if isinstance(value, dict):
        return {_text(key): _text(item) for key, item in value.items()}
    return value


def _pairs(flat: list[Any]) -> dict[str, str]:
    """HGETALL as returned inside a Lua reply: a flat [field, value, ...] list."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


def _detail(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


class RedisRegistryStore(RegistryStore):
    """``RegistryStore`` on one Redis; the client may or may not decode responses."""

    def __init__(
        self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = client
        self._prefix = prefix
        # Alias and delete events carry a wall-clock time for the audit trail
        # only; the store's contract passes no time for them.
        self._clock = clock
        # register_script only hashes the source; nothing is sent until first use,
        # and redis-py reloads a script the server has forgotten (NOSCRIPT).
        self._create_model = self._script(_CREATE_MODEL)
        self._add_version = self._script(_ADD_VERSION)
        self._set_alias = self._script(_SET_ALIAS)
        self._delete_alias = self._script(_DELETE_ALIAS)
        self._set_route = self._script(_SET_ROUTE)
        self._delete_route = self._script(_DELETE_ROUTE)
        self._list_models = self._script(_LIST_MODELS)
        self._list_routes = self._script(_LIST_ROUTES)
        self._snapshot = self._script(_SNAPSHOT)

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisRegistryStore:
        client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=2.0, socket_timeout=5.0
        )
        return cls(client, prefix)

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def changes_channel(self) -> str:
        return f"{self._prefix}:changes"

    @property
    def audit_stream(self) -> str:
        return f"{self._prefix}:audit"

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def _script(self, body: str) -> Script:
        return self._redis.register_script(_LUA_PRELUDE + body)

    def _run(self, script: Script, *args: str | int) -> list[Any]:
        with _reachable():
            result = _text(script(keys=[], args=[self._prefix, *args]))
        if not isinstance(result, list):
            raise Internal(f"unexpected reply from the registry store: {result!r:.100}")
        return result

    # ------------------------------------------------------------------ models

    def create_model(self, name: str, description: str, now_ms: int) -> Model:
        validate_name("name", name)
        result = self._run(
            self._create_model, name, description, now_ms, _detail(description=description)
        )
        if result[0] == "exists":
            raise AlreadyExists(f"model '{name}' already exists")
        return Model(name=name, description=description, created_at_ms=now_ms)

    def get_model(self, name: str) -> Model:
        validate_name("name", name)
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(self._key("model", name))
            pipe.hgetall(self._key("aliases", name))
            fields, aliases = _text(pipe.execute())
        if not fields:
            raise NotFound(f"model '{name}' not found")
        return _model(name, fields, aliases)

    def list_models(self) -> list[Model]:
        rows = self._run(self._list_models)
        models = [_model(str(row[0]), _pairs(row[1]), _pairs(row[2])) for row in rows]
        return sorted(models, key=lambda model: model.name)

    # ---------------------------------------------------------------- versions

    def add_version(
        self,
        model: str,
        sha256: str,
        size_bytes: int,
        signature: Signature,
        description: str,
        now_ms: int,
    ) -> ModelVersion:
        validate_name("model", model)
        record = version_record(sha256, size_bytes, signature, description, now_ms)
        result = self._run(
            self._add_version,
            model,
            record,
            _detail(sha256=sha256, size_bytes=size_bytes),
            now_ms,
        )
        if result[0] == "no_model":
            raise NotFound(f"model '{model}' not found")
        return version_from_record(model, int(result[1]), record)

    def get_version(self, model: str, version: int) -> ModelVersion:
        validate_name("model", model)
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.sismember(self._key("models"), model)
            pipe.hget(self._key("versions", model), str(version))
            exists, record = _text(pipe.execute())
        _require_model(exists, model)
        if record is None:
            raise NotFound(f"version {version} of model '{model}' not found")
        return version_from_record(model, version, str(record))

    def list_versions(self, model: str) -> list[ModelVersion]:
        validate_name("model", model)
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.sismember(self._key("models"), model)
            pipe.hgetall(self._key("versions", model))
            exists, records = _text(pipe.execute())
        _require_model(exists, model)
        versions = [
            version_from_record(model, int(number), record) for number, record in records.items()
        ]
        return sorted(versions, key=lambda v: v.version)

    # ----------------------------------------------------------------- aliases

    def set_alias(self, model: str, alias: str, version: int) -> Alias:
        validate_name("model", model)
        validate_alias("alias", alias)
        validate_version_number("version", version)
        result = self._run(self._set_alias, model, alias, version, self._now_ms())
        if result[0] == "no_model":
            raise NotFound(f"model '{model}' not found")
        if result[0] == "no_version":
            raise NotFound(f"version {version} of model '{model}' not found")
        return Alias(model=model, alias=alias, version=version)

    def get_alias(self, model: str, alias: str) -> Alias:
        validate_name("model", model)
        validate_alias("alias", alias)
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.sismember(self._key("models"), model)
            pipe.hget(self._key("aliases", model), alias)
            exists, version = _text(pipe.execute())
        _require_model(exists, model)
        if version is None:
            raise NotFound(f"alias '{alias}' of model '{model}' not found")
        return Alias(model=model, alias=alias, version=int(version))

    def delete_alias(self, model: str, alias: str) -> None:
        validate_name("model", model)
        validate_alias("alias", alias)
        result = self._run(self._delete_alias, model, alias, self._now_ms())
        if result[0] == "no_model":
            raise NotFound(f"model '{model}' not found")
        if result[0] == "no_alias":
            raise NotFound(f"alias '{alias}' of model '{model}' not found")
        if result[0] == "in_use":
            raise FailedPrecondition(
                f"alias '{alias}' of model '{model}' is still routed to by endpoint "
                f"'{result[1]}'; change that route first"
            )

    # ------------------------------------------------------------------ routes

    def set_route(
        self,
        endpoint: str,
        targets: tuple[RouteTarget, ...],
        expected_revision: int,
        now_ms: int,
    ) -> Route:
        validate_name("endpoint", endpoint)
        refs: list[str | int] = []
        for target in targets:
            if target.alias is not None:
                refs += [target.model, "a", target.alias]
            else:
                refs += [target.model, "v", target.version if target.version is not None else 0]
        stored = targets_record(targets)
        detail = json.dumps(
            {"targets": json.loads(stored), "revision": expected_revision + 1},
            separators=(",", ":"),
        )
        result = self._run(
            self._set_route, endpoint, stored, expected_revision, now_ms, detail, *refs
        )
        status = result[0]
        if status == "stale":
            raise Aborted(
                f"endpoint '{endpoint}': expected revision {expected_revision}, "
                f"current revision is {int(result[1])}; re-read the route and retry"
            )
        if status in ("no_model", "no_version", "no_alias"):
            raise NotFound(_missing_target(targets[int(result[1])], int(result[1]), status))
        return Route(
            endpoint=endpoint, targets=targets, revision=int(result[1]), updated_at_ms=now_ms
        )

    def get_route(self, endpoint: str) -> Route:
        validate_name("endpoint", endpoint)
        with _reachable():
            fields = _text(self._redis.hgetall(self._key("route", endpoint)))
        if not fields:
            raise NotFound(f"endpoint '{endpoint}' not found")
        return _route(
            endpoint,
            str(fields["targets"]),
            str(fields["revision"]),
            str(fields["updated_at_ms"]),
        )

    def list_routes(self) -> list[Route]:
        rows = self._run(self._list_routes)
        routes = [_route(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]
        return sorted(routes, key=lambda route: route.endpoint)

    def delete_route(self, endpoint: str, expected_revision: int) -> None:
        """Deletes the route; ``expected_revision`` 0 deletes whatever revision is there."""
        validate_name("endpoint", endpoint)
        result = self._run(self._delete_route, endpoint, expected_revision, self._now_ms())
        if result[0] == "no_route":
            raise NotFound(f"endpoint '{endpoint}' not found")
        if result[0] == "stale":
            raise Aborted(
                f"endpoint '{endpoint}': expected revision {expected_revision}, "
                f"current revision is {int(result[1])}; re-read the route and retry"
            )

    # ---------------------------------------------------------------- snapshot

    def snapshot(self) -> ServingSnapshot:
        generation, route_rows, model_rows = self._run(self._snapshot)
        routes = {
            str(r[0]): _route(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in route_rows
        }
        versions: dict[VersionKey, ModelVersion] = {}
        aliases: dict[tuple[str, str], int] = {}
        for row in model_rows:
            model = str(row[0])
            for number, record in _pairs(row[1]).items():
                versions[VersionKey(model, int(number))] = version_from_record(
                    model, int(number), record
                )
            for alias, number in _pairs(row[2]).items():
                aliases[(model, alias)] = int(number)
        return ServingSnapshot(
            routes=routes, versions=versions, aliases=aliases, generation=int(generation)
        )

    def current_generation(self) -> int:
        with _reachable():
            value = _text(self._redis.get(self._key("generation")))
        return int(value) if value is not None else 0


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    """Turns "cannot talk to Redis" into Unavailable; everything else propagates."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        raise Unavailable(f"registry store unreachable: {error}") from error


def _require_model(exists: Any, model: str) -> None:
    if not exists:
        raise NotFound(f"model '{model}' not found")


def _model(name: str, fields: dict[str, str], aliases: dict[str, str]) -> Model:
    return Model(
        name=name,
        description=fields.get("description", ""),
        created_at_ms=int(fields.get("created_at_ms", 0)),
        latest_version=int(fields.get("latest_version", 0)),
        aliases={alias: int(version) for alias, version in aliases.items()},
    )


def _route(endpoint: str, targets: str, revision: str, updated_at_ms: str) -> Route:
    return Route(
        endpoint=endpoint,
        targets=targets_from_record(targets),
        revision=int(revision),
        updated_at_ms=int(updated_at_ms),
    )


def _missing_target(target: RouteTarget, index: int, status: str) -> str:
    if status == "no_model":
        return f"targets[{index}].model: model '{target.model}' not found"
    if status == "no_version":
        return (
            f"targets[{index}].version: version {target.version} "
            f"of model '{target.model}' not found"
        )
    return f"targets[{index}].alias: alias '{target.alias}' of model '{target.model}' not found"
