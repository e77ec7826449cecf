"""One way to open a Redis connection, whatever the URL: plain, TLS or Sentinel.

Understood URLs:

- ``redis://[[user]:password@]host:port/db`` and ``rediss://…`` (TLS), as redis-py reads them;
- ``redis+sentinel://[[user]:password@]s1:26379,s2:26379/<master>/<db>``: the client asks
  the sentinels which server is the master, and asks again after every connection error,
  so a failover costs a few retried commands, not a restart. The password (if any)
  is the master's; sentinels are asked without one unless ``sentinel_password`` is given.

Every client gets a bounded retry with jittered exponential backoff on connection
errors and timeouts: long enough to ride out a Sentinel failover (a few seconds),
bounded so a Redis that is really gone surfaces as an error instead of a hang, and
jittered so a fleet of replicas does not reconnect in lockstep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_RETRIES = 10
DEFAULT_BACKOFF_BASE_S = 0.05
DEFAULT_BACKOFF_CAP_S = 1.0


@dataclass(frozen=True)
class SentinelUrl:
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parses ``redis+sentinel://[[user]:pw@]h1:p1,h2:p2/<master>[/<db>]``.

    Raises ``ValueError`` naming the part that is wrong.
    """
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"redis url: expected scheme {SENTINEL_SCHEME}://, got {url!r}")
    userinfo, at, hosts_text = parts.netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(password_text) if colon else None
    sentinels = []
    for item in hosts_text.split(","):
        host, colon, port_text = item.strip().rpartition(":")
        if not colon or not host or not port_text.isdigit():
            raise ValueError(
                f"redis url {url!r}: sentinel {item!r} must be host:port (e.g. s1:26379)"
            )
        sentinels.append((host, int(port_text)))
    path = [segment for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2:
        raise ValueError(
            f"redis url {url!r}: path must be /<master name>[/<db>], got {parts.path!r}"
        )
    db_text = path[1] if len(path) == 2 else "0"
    if not db_text.isdigit():
        raise ValueError(f"redis url {url!r}: db must be a whole number, got {db_text!r}")
    return SentinelUrl(tuple(sentinels), unquote(path[0]), int(db_text), username, password)


def failover_retry(
    retries: int = DEFAULT_RETRIES,
    base_s: float = DEFAULT_BACKOFF_BASE_S,
    cap_s: float = DEFAULT_BACKOFF_CAP_S,
) -> Retry:
    """Retries on connection errors and timeouts, each wait jittered in [d/2, d]."""
    return Retry(EqualJitterBackoff(cap=cap_s, base=base_s), retries)


def connect(
    url: str,
    *,
    retries: int = DEFAULT_RETRIES,
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S,
    backoff_cap_s: float = DEFAULT_BACKOFF_CAP_S,
    sentinel_password: str | None = None,
    **opts: Any,
) -> redis.Redis:
    """A Redis client for ``url``; ``opts`` are redis-py connection options.

    Nothing is contacted here: the first command connects (and, for Sentinel,
    discovers the master).
    """
    retry = failover_retry(retries, backoff_base_s, backoff_cap_s)
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        parsed = parse_sentinel_url(url)
        query = parse_qs(urlsplit(url).query)
        from_query = query.get("sentinel_password", [])
        password = sentinel_password or (from_query[0] if from_query else None)
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": opts.get("socket_timeout", 2.0),
            "socket_connect_timeout": opts.get("socket_connect_timeout", 2.0),
        }
        if password:
            sentinel_kwargs["password"] = password
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs
        )
        client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            parsed.master,
            db=parsed.db,
            username=parsed.username,
            password=parsed.password,
            retry=retry,
            **opts,
        )
        return client
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            f"redis url {url!r}: expected redis://, rediss://, unix:// or {SENTINEL_SCHEME}://"
        )
    return redis.Redis.from_url(url, retry=retry, **opts)
