"""Session fixtures shared by every test: a real Redis and one local Ray."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelplane.registry.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (the embedded binary) on a free port, stopped at the end."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture()
def key_prefix() -> str:
    """A prefix of its own per test, so tests sharing the Redis never see each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray for the whole session (Ray allows one ``ray.init`` per process).

    Explicit CPUs so Ray never claims the whole 2-core machine; shut down at the end,
    which stops the raylet, GCS and workers this process started.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=str(Path("/tmp") / f"ray_mp_{uuid.uuid4().hex[:6]}"),
    )
    yield None
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()
