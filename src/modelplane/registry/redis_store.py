"""The registry on Redis: every mutation one Lua script, audited and announced.

Keys, all under ``<prefix>:``::

    generation              counter bumped by every mutation
    audit                   stream: action, subject, detail (JSON), ts_ms, generation
    changes                 pub/sub channel: {"kind", "name", "generation"}
    models                  set of model names
    model:<name>            hash: description, created_at_ms, latest_version,
                            versions_rev (bumped by every change to its versions)
    idempotency:<name>      hash: idempotency key -> version number
    alias_history:<m>:<a>   list of JSON alias moves (never trimmed)
    route_history:<e>       list of JSON route revisions (never trimmed)
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
from redis.sentinel import SentinelConnectionPool

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
    AliasChange,
    AuditEvent,
    Lineage,
    Model,
    ModelVersion,
    Route,
    RouteRevision,
    RouteTarget,
    ServedAt,
    ServedTarget,
    ServingSnapshot,
    ShadowTarget,
    Signature,
    VersionKey,
    VersionStatus,
)
from modelplane.registry import audit_context
from modelplane.registry.names import validate_alias, validate_name, validate_version_number
from modelplane.registry.records import (
    policy_from_record,
    policy_record,
    targets_from_record,
    targets_record,
    version_from_record,
    version_record,
    version_to_json,
)
from modelplane.registry.redis_connect import connect
from modelplane.registry.store import RegistryStore

# Shared by every script. ARGV[1..3] are always the key prefix, the actor and
# the reason (audit_context.py); each script's own arguments start at ARGV[4].
# The audit stream is never trimmed: a regulated trail must not lose events
# silently; archiving old events is the operator's decision.
_LUA_PRELUDE = """
local prefix, actor, reason = ARGV[1], ARGV[2], ARGV[3]
local function k(...)
  return prefix .. ':' .. table.concat({...}, ':')
end
-- ev: kind, name, action, subject, now, and optional detail, before, after
-- (JSON texts), model, endpoint.
local function emit(ev)
  local gen = redis.call('INCR', k('generation'))
  redis.call('XADD', k('audit'), '*',
    'action', ev.action, 'subject', ev.subject, 'detail', ev.detail or '{}',
    'ts_ms', ev.now, 'generation', gen, 'actor', actor, 'reason', reason,
    'before', ev.before or '', 'after', ev.after or '',
    'model', ev.model or '', 'endpoint', ev.endpoint or '')
  redis.call('PUBLISH', k('changes'),
    cjson.encode({kind = ev.kind, name = ev.name, generation = gen}))
  return gen
end
local function status_of(record)
  return cjson.decode(record)['status']
end
-- Aliases of the model naming the version, and routes reaching it directly or
-- through one of those aliases.
local function references(model, version)
  local aliases, endpoints, by_alias = {}, {}, {}
  local flat = redis.call('HGETALL', k('aliases', model))
  for i = 1, #flat, 2 do
    by_alias[flat[i]] = flat[i + 1]
    if flat[i + 1] == version then aliases[#aliases + 1] = flat[i] end
  end
  local function names(t)
    return t['model'] == model and ((t['version'] and tostring(t['version']) == version)
      or (t['alias'] and by_alias[t['alias']] == version))
  end
  for _, endpoint in ipairs(redis.call('SMEMBERS', k('routes'))) do
    local route = k('route', endpoint)
    -- Weighted targets, shadows and the fallback all make a replica load the version.
    local refs = {}
    local targets = redis.call('HGET', route, 'targets')
    if targets then
      for _, t in ipairs(cjson.decode(targets)) do refs[#refs + 1] = t end
    end
    local policy = redis.call('HGET', route, 'policy')
    if policy and policy ~= '' then
      local p = cjson.decode(policy)
      if type(p['shadows']) == 'table' then
        for _, t in ipairs(p['shadows']) do refs[#refs + 1] = t end
      end
      if type(p['fallback']) == 'table' then refs[#refs + 1] = p['fallback'] end
    end
    for _, t in ipairs(refs) do
      if names(t) then
        endpoints[#endpoints + 1] = endpoint
        break
      end
    end
  end
  table.sort(aliases)
  table.sort(endpoints)
  return aliases, endpoints
end
"""

# ARGV: name, description, now_ms, detail
_CREATE_MODEL = """
local name, description, now, detail = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('SADD', k('models'), name) == 0 then
  return {'exists'}
end
redis.call('HSET', k('model', name),
  'description', description, 'created_at_ms', now, 'latest_version', 0)
local gen = emit({kind = 'model', name = name, action = 'create_model',
  subject = 'model/' .. name, detail = detail, after = detail, model = name, now = now})
return {'ok', gen}
"""

# ARGV: model, record, detail, now_ms, idempotency key ('' for none)
_ADD_VERSION = """
local model, record, detail, now, idem = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if redis.call('SISMEMBER', k('models'), model) == 0 then
  return {'no_model'}
end
if idem ~= '' then
  local existing = redis.call('HGET', k('idempotency', model), idem)
  if existing then
    return {'duplicate', tonumber(existing)}
  end
end
local mkey, vkey = k('model', model), k('versions', model)
local n = tonumber(redis.call('HGET', mkey, 'latest_version') or '0') + 1
-- Never reuse a number, even if the counter and the versions ever disagree.
while redis.call('HEXISTS', vkey, tostring(n)) == 1 do
  n = n + 1
end
redis.call('HSET', vkey, tostring(n), record)
redis.call('HSET', mkey, 'latest_version', n)
redis.call('HINCRBY', mkey, 'versions_rev', 1)
if idem ~= '' then
  redis.call('HSET', k('idempotency', model), idem, n)
end
local d = cjson.decode(detail)
d['version'] = n
local gen = emit({kind = 'version', name = model, action = 'register_version',
  subject = 'model/' .. model .. '/version/' .. n, detail = cjson.encode(d),
  after = cjson.encode({status = status_of(record), version = n}), model = model, now = now})
return {'ok', n, gen}
"""

# Compare-and-set of a version record (status changes). ARGV: model, version,
# expected record, new record, action, before, after, now_ms, '1' to refuse
# while a route reaches the version.
_REPLACE_VERSION = """
local model, version, expected, record = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local action, before, after, now, guard = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local vkey = k('versions', model)
local current = redis.call('HGET', vkey, version)
if not current then
  return {'no_version'}
end
if current ~= expected then
  return {'changed'}
end
if guard == '1' then
  local _, endpoints = references(model, version)
  if #endpoints > 0 then
    return {'routed', table.concat(endpoints, ',')}
  end
end
redis.call('HSET', vkey, version, record)
redis.call('HINCRBY', k('model', model), 'versions_rev', 1)
local gen = emit({kind = 'version', name = model, action = action,
  subject = 'model/' .. model .. '/version/' .. version, before = before, after = after,
  model = model, now = now})
return {'ok', gen}
"""

# ARGV: model, version, now_ms
_DELETE_VERSION = """
local model, version, now = ARGV[4], ARGV[5], ARGV[6]
local vkey = k('versions', model)
local record = redis.call('HGET', vkey, version)
if not record then
  return {'no_version'}
end
local aliases, endpoints = references(model, version)
if #aliases > 0 or #endpoints > 0 then
  return {'in_use', table.concat(aliases, ','), table.concat(endpoints, ',')}
end
redis.call('HDEL', vkey, version)
redis.call('HINCRBY', k('model', model), 'versions_rev', 1)
-- The number stays used: latest_version is not lowered, so it is never reissued.
local gen = emit({kind = 'version', name = model, action = 'delete_version',
  subject = 'model/' .. model .. '/version/' .. version, before = record, model = model,
  now = now})
return {'ok', gen}
"""

# ARGV: model, alias, version, now_ms
_SET_ALIAS = """
local model, alias, version, now = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('SISMEMBER', k('models'), model) == 0 then
  return {'no_model'}
end
local record = redis.call('HGET', k('versions', model), version)
if not record then
  return {'no_version'}
end
local status = status_of(record)
if status ~= 'READY' then
  return {'not_ready', status}
end
local akey = k('aliases', model)
local previous = redis.call('HGET', akey, alias)
redis.call('HSET', akey, alias, version)
local d = {version = tonumber(version)}
local before = ''
if previous then
  d['previous'] = tonumber(previous)
  before = cjson.encode({version = tonumber(previous)})
end
local gen = emit({kind = 'alias', name = model, action = 'set_alias',
  subject = 'model/' .. model .. '/alias/' .. alias, detail = cjson.encode(d),
  before = before, after = cjson.encode({version = tonumber(version)}), model = model,
  now = now})
redis.call('RPUSH', k('alias_history', model, alias), cjson.encode({
  version = tonumber(version), previous = tonumber(previous or '0'), ts_ms = tonumber(now),
  actor = actor, reason = reason, generation = gen}))
return {'ok', gen}
"""

# ARGV: model, alias, now_ms
_DELETE_ALIAS = """
local model, alias, now = ARGV[4], ARGV[5], ARGV[6]
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
local state = cjson.encode({version = tonumber(version)})
local gen = emit({kind = 'alias', name = model, action = 'delete_alias',
  subject = 'model/' .. model .. '/alias/' .. alias, detail = state, before = state,
  model = model, now = now})
redis.call('RPUSH', k('alias_history', model, alias), cjson.encode({
  version = 0, previous = tonumber(version), ts_ms = tonumber(now),
  actor = actor, reason = reason, generation = gen}))
return {'ok', gen}
"""

# ARGV: endpoint, targets, expected_revision, now_ms, detail, policy,
#       then per target (then per shadow, then the fallback): model, 'v' or 'a', version or alias
_SET_ROUTE = """
local endpoint, targets, expected = ARGV[4], ARGV[5], tonumber(ARGV[6])
local now, detail, policy = ARGV[7], ARGV[8], ARGV[9]
local rkey = k('route', endpoint)
local current = tonumber(redis.call('HGET', rkey, 'revision') or '0')
if current ~= expected then
  return {'stale', current}
end
-- Re-checked here, atomically with the write, so a route can never name
-- something that vanished or stopped being servable between the caller's
-- checks and this step.
local i = 10
local index = 0
while ARGV[i] do
  local model, kind, ref = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('SISMEMBER', k('models'), model) == 0 then
    return {'no_model', index}
  end
  local number = ref
  if kind == 'a' then
    number = redis.call('HGET', k('aliases', model), ref)
    if not number then
      return {'no_alias', index}
    end
  end
  local record = redis.call('HGET', k('versions', model), number)
  if not record then
    return {'no_version', index}
  end
  local status = status_of(record)
  if status ~= 'READY' then
    return {'not_ready', index, status, number}
  end
  i = i + 3
  index = index + 1
end
local before = ''
local old = redis.call('HMGET', rkey, 'targets', 'revision')
if old[1] then
  before = '{"revision":' .. old[2] .. ',"targets":' .. old[1] .. '}'
end
local revision = current + 1
redis.call('HSET', rkey, 'targets', targets, 'revision', revision, 'updated_at_ms', now,
  'policy', policy)
redis.call('SADD', k('routes'), endpoint)
local gen = emit({kind = 'route', name = endpoint, action = 'set_route',
  subject = 'endpoint/' .. endpoint, detail = detail, before = before, after = detail,
  endpoint = endpoint, now = now})
redis.call('RPUSH', k('route_history', endpoint), '{"revision":' .. revision ..
  ',"ts_ms":' .. now .. ',"generation":' .. gen .. ',"targets":' .. targets ..
  ',"policy":' .. policy .. '}')
return {'ok', revision, gen}
"""

# ARGV: endpoint, expected_revision (0: any), now_ms, action (delete_route or
# retire_endpoint: the same removal, told apart in the audit)
_DELETE_ROUTE = """
local endpoint, expected, now, action = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local rkey = k('route', endpoint)
local old = redis.call('HMGET', rkey, 'targets', 'revision')
if not old[2] then
  return {'no_route'}
end
local current = tonumber(old[2])
if expected ~= 0 and current ~= expected then
  return {'stale', current}
end
redis.call('DEL', rkey)
redis.call('SREM', k('routes'), endpoint)
local gen = emit({kind = 'route', name = endpoint, action = action,
  subject = 'endpoint/' .. endpoint, detail = cjson.encode({revision = current}),
  before = '{"revision":' .. old[2] .. ',"targets":' .. old[1] .. '}',
  endpoint = endpoint, now = now})
redis.call('RPUSH', k('route_history', endpoint), '{"revision":0,"ts_ms":' .. now ..
  ',"generation":' .. gen .. ',"targets":[]}')
return {'ok', gen, current}
"""

# An audit event that changes nothing served (rollout steps, alerts): written
# with the current generation, neither bumping it nor publishing, so replicas
# do not resync for it. ARGV: action, subject, detail, before, after, model,
# endpoint, now_ms
_NOTE = """
local gen = tonumber(redis.call('GET', k('generation')) or '0')
return {'ok', redis.call('XADD', k('audit'), '*',
  'action', ARGV[4], 'subject', ARGV[5], 'detail', ARGV[6],
  'ts_ms', ARGV[11], 'generation', gen, 'actor', actor, 'reason', reason,
  'before', ARGV[7], 'after', ARGV[8], 'model', ARGV[9], 'endpoint', ARGV[10])}
"""

# Read-only. -> {{name, model hash, aliases hash}, ...}
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
    local r = redis.call('HMGET', k('route', endpoint), 'targets', 'revision', 'updated_at_ms',
      'policy')
    if r[1] then
      routes[#routes + 1] = {endpoint, r[1], r[2], r[3], r[4] or ''}
    end
  end
  return routes
end
"""

# Read-only. -> {{endpoint, targets, revision, updated_at_ms}, ...}
_LIST_ROUTES = _ROUTES_LUA + "return read_routes()\n"

# Read-only, one consistent view.
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
    if isinstance(value, (list, tuple)):
        # XRANGE entries come back as (id, fields) tuples.
        return [_text(item) for item in value]
    if isinstance(value, dict):
        return {_text(key): _text(item) for key, item in value.items()}
    return value


def _pairs(flat: list[Any]) -> dict[str, str]:
    """HGETALL as returned inside a Lua reply: a flat [field, value, ...] list."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


def _detail(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


# How long a registry write behind Sentinel waits for a replica to hold it
# (below the clients' socket timeouts, so a slow replica is an answer, not a hang).
REPLICA_ACK_TIMEOUT_MS = 500


class RedisRegistryStore(RegistryStore):
    """``RegistryStore`` on one Redis; the client may or may not decode responses."""

    def __init__(
        self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = client
        self._prefix = prefix
        # Behind Sentinel there is a replica to lose writes to on failover: every
        # registry write waits for one to hold it (see ``_run_replicated``).
        self._replica_acks = (
            1 if isinstance(client.connection_pool, SentinelConnectionPool) else 0
        )
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
        self._replace_version = self._script(_REPLACE_VERSION)
        self._delete_version = self._script(_DELETE_VERSION)
        self._note = self._script(_NOTE)
        # Parsed version records by (model, number), reused while the stored
        # text is unchanged: listing thousands of versions then costs one
        # HGETALL and string compares, not thousands of JSON parses.
        self._parsed: dict[tuple[str, int], tuple[str, ModelVersion]] = {}
        # model -> (versions_rev, its versions): a list unchanged in Redis is not re-read.
        self._listed: dict[str, tuple[str, tuple[ModelVersion, ...]]] = {}

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisRegistryStore:
        # connect() also understands redis+sentinel:// URLs and retries across failovers.
        client = connect(
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

    def _run_replicated(self, script: Script, script_args: list[Any]) -> Any:
        """The script, then WAIT on the same connection: acknowledged only once a
        replica holds the write.

        Redis replicates asynchronously. Without this, a write the master
        answered but had not yet sent on was lost when Sentinel promoted the
        replica, and the new master handed the same version number to the next
        registration (seen in the failover test: version 117 given out twice).
        """
        # A master left without replicas (the one just promoted, until the old
        # master rejoins) has nothing to lose a write to: it writes alone rather
        # than refusing every registration until then.
        replication = self._redis.info("replication")
        wanted = min(self._replica_acks, int(replication.get("connected_slaves", 0)))
        if not wanted:
            return script(keys=[], args=script_args)
        pipe = self._redis.pipeline(transaction=False)
        script(keys=[], args=script_args, client=pipe)
        pipe.wait(wanted, REPLICA_ACK_TIMEOUT_MS)
        result, acked = pipe.execute()
        if int(acked) < wanted:
            raise Unavailable(
                f"registry write not confirmed by a Redis replica within "
                f"{REPLICA_ACK_TIMEOUT_MS} ms; it may or may not have been applied"
            )
        return result

    def _script(self, body: str) -> Script:
        return self._redis.register_script(_LUA_PRELUDE + body)

    def _run(self, script: Script, *args: str | int) -> list[Any]:
        context = audit_context.current()
        script_args = [self._prefix, context.actor, context.reason, *args]
        with _reachable():
            if self._replica_acks:
                result = _text(self._run_replicated(script, script_args))
            else:
                result = _text(script(keys=[], args=script_args))
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
        *,
        lineage: Lineage | None = None,
        status: VersionStatus = VersionStatus.READY,
        opset: int = 0,
        reference_sha256: str = "",
        reference_rtol: float = 0.0,
        reference_atol: float = 0.0,
        idempotency_key: str = "",
    ) -> ModelVersion:
        validate_name("model", model)
        record = version_record(
            sha256,
            size_bytes,
            signature,
            description,
            now_ms,
            status=status,
            lineage=lineage or Lineage(),
            opset=opset,
            reference_sha256=reference_sha256,
            reference_rtol=reference_rtol,
            reference_atol=reference_atol,
        )
        result = self._run(
            self._add_version,
            model,
            record,
            _detail(sha256=sha256, size_bytes=size_bytes),
            now_ms,
            idempotency_key,
        )
        if result[0] == "no_model":
            raise NotFound(f"model '{model}' not found")
        if result[0] == "duplicate":
            return self.get_version(model, int(result[1]))
        return version_from_record(model, int(result[1]), record)

    def find_idempotent(self, model: str, key: str) -> ModelVersion | None:
        validate_name("model", model)
        with _reachable():
            number = _text(self._redis.hget(self._key("idempotency", model), key))
        if number is None:
            return None
        try:
            return self.get_version(model, int(number))
        except NotFound:
            # The version was deleted since: the key no longer names anything.
            return None

    def update_version(
        self,
        model: str,
        version: int,
        change: Callable[[ModelVersion], ModelVersion],
        action: str,
        refuse_if_routed: bool = False,
    ) -> ModelVersion:
        """Applies ``change`` to the stored version as one compare-and-set, audited.

        ``change`` may raise (e.g. FailedPrecondition for a transition it does not
        allow); it is re-run on the fresh record if a concurrent write won.
        """
        validate_name("model", model)
        name = f"version {version} of model '{model}'"
        for _ in range(_CAS_ATTEMPTS):
            with _reachable():
                raw = _text(self._redis.hget(self._key("versions", model), str(version)))
            if raw is None:
                self.get_model(model)
                raise NotFound(f"{name} not found")
            current = self._parse(model, version, str(raw))
            updated = change(current)
            state: dict[str, Any] = {
                "status": updated.status.value, "status_reason": updated.status_reason
            }
            if updated.artifact_purged_at_ms != current.artifact_purged_at_ms:
                state["artifact_purged_at_ms"] = updated.artifact_purged_at_ms
                state["sha256"] = updated.sha256
            result = self._run(
                self._replace_version,
                model,
                version,
                str(raw),
                _record_of(updated),
                action,
                _detail(status=current.status.value, status_reason=current.status_reason),
                _detail(**state),
                self._now_ms(),
                "1" if refuse_if_routed else "0",
            )
            if result[0] == "no_version":
                raise NotFound(f"{name} not found")
            if result[0] == "routed":
                raise FailedPrecondition(
                    f"{name} is still served by endpoint(s) {_names(result[1])}; "
                    "change those routes first"
                )
            if result[0] == "ok":
                return updated
        raise Aborted(f"{name} kept changing while it was being updated; retry")

    def delete_version(self, model: str, version: int) -> None:
        validate_name("model", model)
        validate_version_number("version", version)
        result = self._run(self._delete_version, model, version, self._now_ms())
        name = f"version {version} of model '{model}'"
        if result[0] == "no_version":
            self.get_model(model)
            raise NotFound(f"{name} not found")
        if result[0] == "in_use":
            refs = [f"alias {_names(result[1])}"] if result[1] else []
            refs += [f"endpoint(s) {_names(result[2])}"] if result[2] else []
            raise FailedPrecondition(
                f"{name} is still referenced by {' and '.join(refs)}; "
                "move or delete those first, or archive the version instead"
            )

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
        return self._parse(model, version, str(record))

    def _parse(self, model: str, version: int, record: str) -> ModelVersion:
        cached = self._parsed.get((model, version))
        if cached is not None and cached[0] == record:
            return cached[1]
        parsed = version_from_record(model, version, record)
        if len(self._parsed) >= _PARSE_CACHE_MAX:
            self._parsed.clear()
        self._parsed[(model, version)] = (record, parsed)
        return parsed

    def list_versions(self, model: str) -> list[ModelVersion]:
        validate_name("model", model)
        mkey = self._key("model", model)
        with _reachable():
            revision = _text(self._redis.hget(mkey, "versions_rev"))
        cached = self._listed.get(model)
        if revision is not None and cached is not None and cached[0] == revision:
            # Nothing about the model's versions changed since the last read.
            return list(cached[1])
        with _reachable():
            pipe = self._redis.pipeline(transaction=True)
            pipe.sismember(self._key("models"), model)
            pipe.hget(mkey, "versions_rev")
            pipe.hgetall(self._key("versions", model))
            exists, revision, records = _text(pipe.execute())
        _require_model(exists, model)
        versions = [self._parse(model, int(number), record) for number, record in records.items()]
        versions.sort(key=lambda v: v.version)
        if revision is not None:
            self._listed[model] = (revision, tuple(versions))
        return versions

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
        if result[0] == "not_ready":
            raise FailedPrecondition(
                f"version {version} of model '{model}' is {result[1]}, not READY; "
                "only READY versions can be aliased"
            )
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
        shadows: tuple[ShadowTarget, ...] = (),
        fallback: RouteTarget | None = None,
        sticky_input: str = "",
    ) -> Route:
        validate_name("endpoint", endpoint)
        refs: list[str | int] = []
        for target in targets:
            if target.alias is not None:
                refs += [target.model, "a", target.alias]
            else:
                refs += [target.model, "v", target.version if target.version is not None else 0]
        # Shadows and the fallback are checked by the same atomic step as the targets.
        refs += _policy_refs(shadows, fallback)
        stored = targets_record(targets)
        policy = policy_record(shadows, fallback, sticky_input)
        detail = json.dumps(
            {
                "targets": json.loads(stored),
                "revision": expected_revision + 1,
                "policy": json.loads(policy),
            },
            separators=(",", ":"),
        )
        result = self._run(
            self._set_route, endpoint, stored, expected_revision, now_ms, detail, policy, *refs
        )
        status = result[0]
        if status == "stale":
            raise Aborted(
                f"endpoint '{endpoint}': expected revision {expected_revision}, "
                f"current revision is {int(result[1])}; re-read the route and retry"
            )
        if status in ("no_model", "no_version", "no_alias"):
            field, ref = _ref_at(int(result[1]), targets, shadows, fallback)
            raise NotFound(_missing_target(ref, field, status))
        if status == "not_ready":
            field, ref = _ref_at(int(result[1]), targets, shadows, fallback)
            via = f" (alias '{ref.alias}')" if ref.alias is not None else ""
            raise FailedPrecondition(
                f"{field}: version {result[3]} of model '{ref.model}'{via} is "
                f"{result[2]}, not READY; only READY versions can be routed to"
            )
        return Route(
            endpoint=endpoint,
            targets=targets,
            revision=int(result[1]),
            updated_at_ms=now_ms,
            shadows=shadows,
            fallback=fallback,
            sticky_input=sticky_input,
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
            fields.get("policy", ""),
        )

    def list_routes(self) -> list[Route]:
        rows = self._run(self._list_routes)
        routes = [_route(*(str(cell) for cell in r)) for r in rows]
        return sorted(routes, key=lambda route: route.endpoint)

    def delete_route(self, endpoint: str, expected_revision: int) -> None:
        """Deletes the route; ``expected_revision`` 0 deletes whatever revision is there."""
        self._remove_route(endpoint, expected_revision, "delete_route")

    def retire_route(self, endpoint: str, expected_revision: int) -> int:
        """Removes the route as ``delete_route`` does, audited ``retire_endpoint``."""
        return self._remove_route(endpoint, expected_revision, "retire_endpoint")

    def _remove_route(self, endpoint: str, expected_revision: int, action: str) -> int:
        validate_name("endpoint", endpoint)
        result = self._run(
            self._delete_route, endpoint, expected_revision, self._now_ms(), action
        )
        if result[0] == "no_route":
            raise NotFound(f"endpoint '{endpoint}' not found")
        if result[0] == "stale":
            raise Aborted(
                f"endpoint '{endpoint}': expected revision {expected_revision}, "
                f"current revision is {int(result[1])}; re-read the route and retry"
            )
        return int(result[2])

    def record_event(
        self,
        action: str,
        subject: str,
        *,
        model: str = "",
        endpoint: str = "",
        detail: str = "{}",
        before: str = "",
        after: str = "",
    ) -> str:
        result = self._run(
            self._note, action, subject, detail, before, after, model, endpoint,
            self._now_ms(),
        )
        return str(result[1])

    # ---------------------------------------------------------------- snapshot

    def snapshot(self) -> ServingSnapshot:
        generation, route_rows, model_rows = self._run(self._snapshot)
        routes = {
            str(r[0]): _route(*(str(cell) for cell in r)) for r in route_rows
        }
        versions: dict[VersionKey, ModelVersion] = {}
        aliases: dict[tuple[str, str], int] = {}
        for row in model_rows:
            model = str(row[0])
            for number, record in _pairs(row[1]).items():
                versions[VersionKey(model, int(number))] = self._parse(
                    model, int(number), record
                )
            for alias, number in _pairs(row[2]).items():
                aliases[(model, alias)] = int(number)
        return ServingSnapshot(
            routes=routes, versions=versions, aliases=aliases, generation=int(generation)
        )

    # ------------------------------------------------------------------- audit

    def alias_history(self, model: str, alias: str) -> list[AliasChange]:
        validate_name("model", model)
        validate_alias("alias", alias)
        with _reachable():
            entries = _text(self._redis.lrange(self._key("alias_history", model, alias), 0, -1))
        changes = []
        for entry in entries:
            data = json.loads(entry)
            changes.append(
                AliasChange(
                    model=model,
                    alias=alias,
                    version=int(data["version"]),
                    previous_version=int(data.get("previous", 0)),
                    changed_at_ms=int(data["ts_ms"]),
                    actor=str(data.get("actor", "")),
                    reason=str(data.get("reason", "")),
                    generation=int(data["generation"]),
                )
            )
        return changes

    def audit_events(
        self, since_ms: int | None = None, until_ms: int | None = None, page: int = 2000
    ) -> Iterator[AuditEvent]:
        """Audit events oldest first, bounded by the stream ids' time (Redis's clock)."""
        low = f"{since_ms}-0" if since_ms is not None else "-"
        high = f"{until_ms}-18446744073709551615" if until_ms is not None else "+"
        while True:
            with _reachable():
                rows = _text(self._redis.xrange(self.audit_stream, low, high, count=page))
            for event_id, fields in rows:
                yield _audit_event(str(event_id), fields)
            if len(rows) < page:
                return
            # Exclusive continuation after the last id seen.
            low = "(" + str(rows[-1][0])

    def served_at(self, endpoint: str, at_ms: int) -> ServedAt:
        validate_name("endpoint", endpoint)
        with _reachable():
            entries = _text(self._redis.lrange(self._key("route_history", endpoint), 0, -1))
        in_force = None
        for entry in entries:
            data = json.loads(entry)
            if int(data["ts_ms"]) > at_ms:
                break
            in_force = data
        if in_force is None or int(in_force["revision"]) == 0:
            return ServedAt(endpoint=endpoint, at_ms=at_ms, revision=0, targets=())
        targets = []
        for item in in_force["targets"]:
            model = str(item["model"])
            if "alias" in item:
                alias = str(item["alias"])
                version = self._alias_at(model, alias, at_ms)
                targets.append(ServedTarget(model, version, int(item["weight"]), alias))
            else:
                targets.append(ServedTarget(model, int(item["version"]), int(item["weight"])))
        return ServedAt(
            endpoint=endpoint, at_ms=at_ms, revision=int(in_force["revision"]),
            targets=tuple(targets),
        )

    def route_history(self, endpoint: str) -> list[RouteRevision]:
        validate_name("endpoint", endpoint)
        with _reachable():
            entries = _text(self._redis.lrange(self._key("route_history", endpoint), 0, -1))
        revisions = []
        for entry in entries:
            data = json.loads(entry)
            revision = int(data["revision"])
            route = None
            if revision:
                shadows, fallback, sticky_input = policy_from_record(
                    json.dumps(data["policy"]) if "policy" in data else ""
                )
                route = Route(
                    endpoint=endpoint,
                    targets=targets_from_record(json.dumps(data["targets"])),
                    revision=revision,
                    updated_at_ms=int(data["ts_ms"]),
                    shadows=shadows,
                    fallback=fallback,
                    sticky_input=sticky_input,
                )
            revisions.append(
                RouteRevision(
                    endpoint=endpoint,
                    revision=revision,
                    ts_ms=int(data["ts_ms"]),
                    generation=int(data["generation"]),
                    route=route,
                )
            )
        return revisions

    def _alias_at(self, model: str, alias: str, at_ms: int) -> int:
        version = 0
        for change in self.alias_history(model, alias):
            if change.changed_at_ms > at_ms:
                break
            version = change.version
        return version

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


def _route(
    endpoint: str, targets: str, revision: str, updated_at_ms: str, policy: str = ""
) -> Route:
    shadows, fallback, sticky_input = policy_from_record(policy)
    return Route(
        endpoint=endpoint,
        targets=targets_from_record(targets),
        revision=int(revision),
        updated_at_ms=int(updated_at_ms),
        shadows=shadows,
        fallback=fallback,
        sticky_input=sticky_input,
    )


def _policy_refs(
    shadows: tuple[ShadowTarget, ...], fallback: RouteTarget | None
) -> list[str | int]:
    refs: list[str | int] = []
    others: list[ShadowTarget | RouteTarget] = [*shadows]
    if fallback is not None:
        others.append(fallback)
    for ref in others:
        if ref.alias is not None:
            refs += [ref.model, "a", ref.alias]
        else:
            refs += [ref.model, "v", ref.version if ref.version is not None else 0]
    return refs


def _ref_at(
    index: int,
    targets: tuple[RouteTarget, ...],
    shadows: tuple[ShadowTarget, ...],
    fallback: RouteTarget | None,
) -> tuple[str, RouteTarget | ShadowTarget]:
    """The request field and reference behind the Lua script's flat reference index."""
    if index < len(targets):
        return f"targets[{index}]", targets[index]
    index -= len(targets)
    if index < len(shadows):
        return f"shadows[{index}]", shadows[index]
    assert fallback is not None  # the script counts the fallback last
    return "fallback", fallback


def _missing_target(target: RouteTarget | ShadowTarget, field: str, status: str) -> str:
    if status == "no_model":
        return f"{field}.model: model '{target.model}' not found"
    if status == "no_version":
        return f"{field}.version: version {target.version} of model '{target.model}' not found"
    return f"{field}.alias: alias '{target.alias}' of model '{target.model}' not found"


_PARSE_CACHE_MAX = 200_000
_CAS_ATTEMPTS = 10


def _record_of(version: ModelVersion) -> str:
    return json.dumps(version_to_json(version), separators=(",", ":"))


def _names(joined: Any) -> str:
    return ", ".join(f"'{name}'" for name in str(joined).split(",") if name)


def _audit_event(event_id: str, fields: dict[str, str]) -> AuditEvent:
    return AuditEvent(
        event_id=event_id,
        ts_ms=int(fields.get("ts_ms", 0)),
        generation=int(fields.get("generation", 0)),
        action=fields.get("action", ""),
        subject=fields.get("subject", ""),
        actor=fields.get("actor", ""),
        reason=fields.get("reason", ""),
        before_json=fields.get("before", ""),
        after_json=fields.get("after", ""),
        detail_json=fields.get("detail", ""),
        model=fields.get("model", ""),
        endpoint=fields.get("endpoint", ""),
    )
