"""Experiments, runs, environments and promotions on Redis, beside the registry.

Keys, all under the registry's ``<prefix>:``::

    experiments              hash: name -> JSON {description, created_at_ms}
    runs:<experiment>        hash: run id -> JSON run record (records.py)
    runs_rev:<experiment>    counter bumped by every change to one of its runs
    runs_changed:<exp>       sorted set: run id scored by the runs_rev of its last change
    run_experiment           hash: run id -> experiment name
    metric:<run id>:<key>    list of packed point batches (series.py), in logging order
    environments             hash: name -> JSON environment
    promotions               list of JSON promotion records (never trimmed)
    audit                    the registry's audit stream, shared

A run record changes by compare-and-set (a Lua script that writes only if the
stored text is still what the caller read), together with the metric points of
the same batch: a reader never sees a latest value without its points. Changes
that matter for the record (experiments, run start and end, artifacts,
environments, promotions) append their audit event in the same script. Metric
batches are not audited: a training loop logs thousands of points. The audit
events carry the current generation but do not bump it: the generation tells
replicas what to serve, and none of this changes what they serve.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
from redis.commands.core import Script

from modelplane.domain.errors import Aborted, AlreadyExists, Internal, NotFound, Unavailable
from modelplane.domain.experiments import Environment, Experiment, MetricSeries, Run
from modelplane.experiments import records, series
from modelplane.registry import audit_context
from modelplane.registry.redis_connect import connect

_CAS_ATTEMPTS = 16
_PARSE_CACHE_MAX = 200_000

# Like the registry's, the audit stream is never trimmed here: a regulated trail
# must not lose events silently.
_LUA_PRELUDE = """
local prefix, actor, reason = ARGV[1], ARGV[2], ARGV[3]
local function k(...)
  return prefix .. ':' .. table.concat({...}, ':')
end
-- Lets a reader that holds the experiment's runs re-read only those changed since.
local function touched(exp, run_id)
  local rev = redis.call('INCR', k('runs_rev', exp))
  redis.call('ZADD', k('runs_changed', exp), rev, run_id)
end
local function audit(action, subject, now, detail, before, after, model, endpoint)
  local gen = redis.call('GET', k('generation')) or '0'
  redis.call('XADD', k('audit'), '*',
    'action', action, 'subject', subject, 'detail', detail or '{}',
    'ts_ms', now, 'generation', gen, 'actor', actor, 'reason', reason,
    'before', before or '', 'after', after or '',
    'model', model or '', 'endpoint', endpoint or '')
end
"""

# ARGV: name, record, now
_CREATE_EXPERIMENT = """
local name, record, now = ARGV[4], ARGV[5], ARGV[6]
if redis.call('HSETNX', k('experiments'), name, record) == 0 then
  return {'exists'}
end
audit('create_experiment', 'experiment/' .. name, now, record, '', record)
return {'ok'}
"""

# ARGV: experiment, experiment record (used when it does not exist), run id, run record, now
_START_RUN = """
local exp, exp_record, run_id, record, now = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if redis.call('HSETNX', k('experiments'), exp, exp_record) == 1 then
  audit('create_experiment', 'experiment/' .. exp, now, exp_record, '', exp_record)
end
if redis.call('HSETNX', k('run_experiment'), run_id, exp) == 0 then
  return {'exists'}
end
redis.call('HSET', k('runs', exp), run_id, record)
touched(exp, run_id)
audit('start_run', 'experiment/' .. exp .. '/run/' .. run_id, now,
  cjson.encode({run_id = run_id}), '', record)
return {'ok'}
"""


# Compare-and-set of a run record plus its metric points. ARGV: experiment, run
# id, expected record, new record, action ('' = not audited), now, detail,
# after, then (list key suffix, packed points) pairs.
_UPDATE_RUN = """
local exp, run_id, expected, record = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local action, now, detail, after = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local current = redis.call('HGET', k('runs', exp), run_id)
if not current then
  return {'no_run'}
end
if current ~= expected then
  return {'changed'}
end
redis.call('HSET', k('runs', exp), run_id, record)
touched(exp, run_id)
for i = 12, #ARGV, 2 do
  redis.call('RPUSH', k('metric', run_id, ARGV[i]), ARGV[i + 1])
end
if action ~= '' then
  audit(action, 'experiment/' .. exp .. '/run/' .. run_id, now, detail, '', after)
end
return {'ok'}
"""

# ARGV: name, record, now
_SET_ENVIRONMENT = """
local name, record, now = ARGV[4], ARGV[5], ARGV[6]
local before = redis.call('HGET', k('environments'), name) or ''
redis.call('HSET', k('environments'), name, record)
audit('set_environment', 'environment/' .. name, now, record, before, record)
return {'ok'}
"""

# ARGV: record, model, endpoint, now, subject, action
_RECORD_PROMOTION = """
local record, model, endpoint, now, subject = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
redis.call('RPUSH', k('promotions'), record)
audit(ARGV[9], subject, now, record, '', record, model, endpoint)
return {'ok'}
"""


def _text(value: Any) -> Any:
    """Replies as str whether or not the client decodes responses itself."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_text(item) for item in value]
    if isinstance(value, dict):
        return {_text(key): _text(item) for key, item in value.items()}
    return value


def _raw(value: Any) -> bytes:
    """A stored value as bytes (the store's client does not decode, but be safe)."""
    return value.encode() if isinstance(value, str) else bytes(value)


@contextlib.contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except redis.ConnectionError as error:
        raise Unavailable(f"the experiment store is unreachable: {error}") from None
    except redis.TimeoutError as error:
        raise Unavailable(f"the experiment store timed out: {error}") from None


class RedisExperimentStore:
    """Experiments and runs on one Redis.

    The client must not decode responses: metric points are stored packed.
    """

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._create_experiment = self._script(_CREATE_EXPERIMENT)
        self._start_run = self._script(_START_RUN)
        self._update_run = self._script(_UPDATE_RUN)
        self._set_environment = self._script(_SET_ENVIRONMENT)
        self._record_promotion = self._script(_RECORD_PROMOTION)
        # Parsed runs by id, reused while the stored text is unchanged.
        self._parsed: dict[str, tuple[bytes, Run]] = {}
        # experiment -> (runs_rev read, its runs by id). A search re-reads only
        # the runs changed since (runs_changed), so ten thousand runs cost two
        # small round trips, not a 4 MB HGETALL, while training loops log.
        self._experiment_runs: dict[str, tuple[int, dict[str, Run]]] = {}

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisExperimentStore:
        client = connect(url, socket_connect_timeout=2.0, socket_timeout=5.0)
        return cls(client, prefix)

    @property
    def prefix(self) -> str:
        return self._prefix

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    def _script(self, body: str) -> Script:
        return self._redis.register_script(_LUA_PRELUDE + body)

    def _run(self, script: Script, *args: str | int | bytes) -> list[Any]:
        context = audit_context.current()
        with _reachable():
            result = script(keys=[], args=[self._prefix, context.actor, context.reason, *args])
        result = _text(result)
        if not isinstance(result, list):
            raise Internal(f"unexpected reply from the experiment store: {result!r:.100}")
        return result

    # ------------------------------------------------------------- experiments

    def create_experiment(self, name: str, description: str, now_ms: int) -> Experiment:
        record = records.experiment_record(description, now_ms)
        result = self._run(self._create_experiment, name, record, now_ms)
        if result[0] == "exists":
            raise AlreadyExists(f"experiment '{name}' already exists")
        return Experiment(name=name, description=description, created_at_ms=now_ms)

    def list_experiments(self) -> list[Experiment]:
        with _reachable():
            stored = _text(self._redis.hgetall(self._key("experiments")))
        found = [records.experiment_from_record(name, text) for name, text in stored.items()]
        return sorted(found, key=lambda e: e.name)

    def experiment_exists(self, name: str) -> bool:
        with _reachable():
            return bool(self._redis.hexists(self._key("experiments"), name))

    # -------------------------------------------------------------------- runs

    def start_run(self, run: Run) -> Run:
        exp_record = records.experiment_record("", run.start_ms)
        result = self._run(
            self._start_run,
            run.experiment,
            exp_record,
            run.run_id,
            records.run_record(run),
            run.start_ms,
        )
        if result[0] == "exists":
            raise AlreadyExists(f"run '{run.run_id}' already exists")
        return run

    def _locate(self, run_id: str) -> str:
        with _reachable():
            experiment = self._redis.hget(self._key("run_experiment"), run_id)
        if experiment is None:
            raise NotFound(f"run '{run_id}' not found")
        return str(_text(experiment))

    def get_run(self, run_id: str) -> Run:
        experiment = self._locate(run_id)
        with _reachable():
            raw = self._redis.hget(self._key("runs", experiment), run_id)
        if raw is None:
            raise NotFound(f"run '{run_id}' not found")
        return self._parse(run_id, experiment, _raw(raw))

    def _parse(self, run_id: str, experiment: str, raw: bytes) -> Run:
        cached = self._parsed.get(run_id)
        if cached is not None and cached[0] == raw:
            return cached[1]
        run = records.run_from_record(run_id, experiment, raw.decode())
        if len(self._parsed) >= _PARSE_CACHE_MAX:
            self._parsed.clear()
        self._parsed[run_id] = (raw, run)
        return run

    def update_run(
        self,
        run_id: str,
        change: Callable[[Run], tuple[Run, Sequence[tuple[str, bytes]]]],
        action: str = "",
        detail: str = "{}",
    ) -> Run:
        """Applies ``change`` (new run, packed points per key) as one compare-and-set.

        ``change`` may raise (FailedPrecondition for a finished run); it is re-run
        on the fresh record if a concurrent write won.
        """
        experiment = self._locate(run_id)
        key = self._key("runs", experiment)
        for _ in range(_CAS_ATTEMPTS):
            with _reachable():
                raw = self._redis.hget(key, run_id)
            if raw is None:
                raise NotFound(f"run '{run_id}' not found")
            current = self._parse(run_id, experiment, _raw(raw))
            updated, points = change(current)
            record = records.run_record(updated)
            flat: list[str | bytes] = []
            for metric, blob in points:
                flat += [metric, blob]
            after = json.dumps({"status": updated.status.value}) if action else ""
            result = self._run(
                self._update_run,
                experiment,
                run_id,
                _raw(raw),
                record,
                action,
                updated.end_ms or updated.start_ms,
                detail,
                after,
                *flat,
            )
            if result[0] == "no_run":
                raise NotFound(f"run '{run_id}' not found")
            if result[0] == "ok":
                return updated
        raise Aborted(f"run '{run_id}' kept changing while it was being updated; retry")

    def runs(self, experiments: Sequence[str] = ()) -> list[Run]:
        """Every run of the given experiments (all experiments when empty)."""
        with _reachable():
            names = list(experiments) or sorted(
                str(_text(n)) for n in self._redis.hkeys(self._key("experiments"))
            )
        found: list[Run] = []
        for name in names:
            found.extend(self._runs_of(name).values())
        return found

    def _runs_of(self, experiment: str) -> dict[str, Run]:
        cached = self._experiment_runs.get(experiment)
        with _reachable():
            if cached is None:
                pipe = self._redis.pipeline(transaction=True)
                pipe.get(self._key("runs_rev", experiment))
                pipe.hgetall(self._key("runs", experiment))
                rev, stored = pipe.execute()
                by_id = {
                    str(_text(run_id)): self._parse(str(_text(run_id)), experiment, _raw(raw))
                    for run_id, raw in stored.items()
                }
            else:
                seen, previous = cached
                pipe = self._redis.pipeline(transaction=True)
                pipe.get(self._key("runs_rev", experiment))
                pipe.zrangebyscore(self._key("runs_changed", experiment), f"({seen}", "+inf")
                rev, changed = pipe.execute()
                if not changed:
                    return previous
                ids = [str(_text(run_id)) for run_id in changed]
                # Read after the revision: at worst newer than ``rev``, and re-read next time.
                stored_list = self._redis.hmget(self._key("runs", experiment), ids)
                by_id = dict(previous)
                for run_id, raw in zip(ids, stored_list, strict=True):
                    if raw is not None:
                        by_id[run_id] = self._parse(run_id, experiment, _raw(raw))
        self._experiment_runs[experiment] = (int(rev or 0), by_id)
        return by_id

    def metric_history(self, run_id: str, key: str) -> MetricSeries:
        self._locate(run_id)
        with _reachable():
            blobs = self._redis.lrange(self._key("metric", run_id, key), 0, -1)
        return series.unpack(key, [_raw(blob) for blob in blobs])

    # ------------------------------------------------------------ environments

    def set_environment(self, environment: Environment) -> Environment:
        record = records.environment_record(environment)
        self._run(self._set_environment, environment.name, record, environment.updated_at_ms)
        return environment

    def get_environment(self, name: str) -> Environment:
        with _reachable():
            raw = self._redis.hget(self._key("environments"), name)
        if raw is None:
            raise NotFound(f"environment '{name}' not found")
        return records.environment_from_record(name, str(_text(raw)))

    def list_environments(self) -> list[Environment]:
        with _reachable():
            stored = _text(self._redis.hgetall(self._key("environments")))
        found = [records.environment_from_record(n, text) for n, text in stored.items()]
        return sorted(found, key=lambda e: e.name)

    # -------------------------------------------------------------- promotions

    def record_promotion(
        self, record: str, model: str, endpoint: str, now_ms: int, refused: bool = False
    ) -> None:
        """Appends a promotion decision; audited as ``promote`` or ``promote_refused``."""
        subject = f"model/{model}/promotion"
        action = "promote_refused" if refused else "promote"
        self._run(self._record_promotion, record, model, endpoint, now_ms, subject, action)

    def promotion_records(self) -> list[str]:
        with _reachable():
            return [str(_text(item)) for item in self._redis.lrange(self._key("promotions"), 0, -1)]
