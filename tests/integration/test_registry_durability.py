"""Acknowledged writes survive a SIGKILL of redis-server; version numbers are never reused."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from modelplane.domain.errors import Unavailable
from modelplane.domain.models import DataType, Signature, TensorSpec
from modelplane.registry.embedded_redis import EmbeddedRedis
from modelplane.registry.redis_store import RedisRegistryStore

pytestmark = pytest.mark.integration

SIG = Signature((TensorSpec("x", DataType.FLOAT32, (-1, 16)),), ())


@pytest.mark.parametrize("appendfsync", ["everysec", "always"])
def test_sigkill_keeps_everything_acknowledged_a_second_before(
    tmp_path: Path, appendfsync: str
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendfsync=appendfsync).start()
    port = server.port
    acked: list[tuple[int, float]] = []
    try:
        store = RedisRegistryStore.from_url(server.url, "d")
        store.create_model("fraud", "", 0)
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            version = store.add_version("fraud", f"{len(acked):064x}", 1, SIG, "", 0)
            acked.append((version.version, time.monotonic()))
        pid = server.pid
        assert pid is not None
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(Unavailable):
            store.add_version("fraud", "f" * 64, 1, SIG, "", 0)
    finally:
        server.stop()

    restarted = EmbeddedRedis(tmp_path / "redis", port=port, appendfsync=appendfsync).start()
    try:
        store = RedisRegistryStore.from_url(restarted.url, "d")
        present = {v.version for v in store.list_versions("fraud")}
        must_survive = {n for n, at in acked if at < killed_at - 1.0}
        assert must_survive, "the test wrote nothing early enough to check"
        assert must_survive <= present
        if appendfsync == "always":
            assert {n for n, _ in acked} <= present
        fresh = store.add_version("fraud", "e" * 64, 1, SIG, "", 0)
        assert fresh.version > max(n for n, _ in acked)
    finally:
        restarted.stop()
