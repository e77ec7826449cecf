"""Redis high availability: the registry keeps its promises across a Sentinel failover.

A master, a replica and a sentinel (all the real redis-server binary, the sentinel
in ``--sentinel`` mode) run on loopback. Registry writes go through a
``redis+sentinel://`` client while the master is killed by PID. Afterwards every
write that was acknowledged is in the promoted replica with the number it was
given, every other write failed with an error, and no version number was handed
out twice.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from modelplane.domain.models import DataType, Signature, TensorSpec
from modelplane.registry.embedded_redis import find_redis_server, free_port
from modelplane.registry.redis_connect import connect, parse_sentinel_url
from modelplane.registry.redis_store import RedisRegistryStore

SIG = Signature(
    inputs=(TensorSpec("x", DataType.FLOAT32, (-1, 16)),),
    outputs=(TensorSpec("y", DataType.FLOAT32, (-1, 4)),),
)
MASTER_NAME = "mpmaster"


def _wait(check: object, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Trio:
    master_port: int
    replica_port: int
    sentinel_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{MASTER_NAME}/0"

    def master_address(self) -> tuple[str, int]:
        sentinel = redis.Redis(port=self.sentinel_port, socket_timeout=1)
        try:
            host, port = sentinel.execute_command(
                "SENTINEL", "get-master-addr-by-name", MASTER_NAME
            )
            return (host.decode(), int(port))
        finally:
            sentinel.close()


def _start(binary: Path, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(binary), *args],
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture()
def trio(tmp_path: Path) -> Iterator[Trio]:
    binary = find_redis_server()
    trio = Trio(free_port(), free_port(), free_port())
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--daemonize", "no"]
    try:
        for name, port, extra in (
            ("master", trio.master_port, []),
            ("replica", trio.replica_port, ["--replicaof", "127.0.0.1", str(trio.master_port)]),
        ):
            data = tmp_path / name
            data.mkdir()
            trio.processes[name] = _start(
                binary, [*common, "--port", str(port), "--dir", str(data), *extra],
                tmp_path / f"{name}.log",
            )
        replica = redis.Redis(port=trio.replica_port, socket_timeout=1)
        _wait(
            lambda: replica.info("replication").get("master_link_status") == "up",
            "the replica to sync",
        )
        replica.close()
        conf = tmp_path / "sentinel.conf"
        # Sentinel rewrites its config file, so it gets one of its own.
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {trio.sentinel_port}",
                    f"dir {tmp_path}",
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {trio.master_port} 1",
                    f"sentinel down-after-milliseconds {MASTER_NAME} 500",
                    f"sentinel failover-timeout {MASTER_NAME} 5000",
                    "",
                ]
            )
        )
        trio.processes["sentinel"] = _start(
            binary, [str(conf), "--sentinel"], tmp_path / "sentinel.log"
        )

        def sentinel_sees_replica() -> bool:
            sentinel = redis.Redis(port=trio.sentinel_port, socket_timeout=1)
            try:
                return bool(sentinel.execute_command("SENTINEL", "replicas", MASTER_NAME))
            finally:
                sentinel.close()

        _wait(sentinel_sees_replica, "the sentinel to discover the replica")
        yield trio
    finally:
        for process in trio.processes.values():
            if process.poll() is None:
                process.kill()  # by PID: each Popen is one of ours
                process.wait(5)


def test_sentinel_url_parses_hosts_master_db_and_password() -> None:
    parsed = parse_sentinel_url("redis+sentinel://:s3cret@s-0:26379,s-1:26380/primary/3")
    assert parsed.sentinels == (("s-0", 26379), ("s-1", 26380))
    assert (parsed.master, parsed.db, parsed.password) == ("primary", 3, "s3cret")
    assert parse_sentinel_url("redis+sentinel://h:1/m").db == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h1/primary/0", r"sentinel 'h1' must be host:port"),
        ("redis+sentinel://h1:26379/", r"path must be /<master name>\[/<db>\]"),
        ("redis+sentinel://h1:26379/primary/zero", r"db must be a whole number, got 'zero'"),
        ("http://h1:6379/0", r"expected redis://, rediss://, unix:// or redis\+sentinel://"),
    ],
)
def test_bad_urls_are_refused_with_the_part_that_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        connect(url)


def test_writes_survive_a_master_failover_without_reusing_a_version(
    trio: Trio, key_prefix: str
) -> None:
    client = connect(trio.url, socket_timeout=1.0, socket_connect_timeout=0.5)
    store = RedisRegistryStore(client, key_prefix)
    store.create_model("fraud", "", 0)
    acknowledged: dict[int, str] = {}  # version -> the sha of the write it was given to
    failed: list[str] = []
    after_kill = threading.Event()
    acked_after_kill = 0
    stop = threading.Event()

    def write_loop() -> None:
        nonlocal acked_after_kill
        i = 0
        while not stop.is_set():
            sha = f"{i:064x}"
            i += 1
            try:
                version = store.add_version("fraud", sha, 1, SIG, "", i).version
            except Exception as error:  # any error is an honest failure
                failed.append(f"{sha}: {error}")
                continue
            assert version not in acknowledged, f"version {version} handed out twice"
            acknowledged[version] = sha
            if after_kill.is_set():
                acked_after_kill += 1

    writer = threading.Thread(target=write_loop, name="writer")
    writer.start()
    try:
        _wait(lambda: len(acknowledged) >= 30, "writes before the failover")
        old_master = trio.master_address()
        assert old_master[1] == trio.master_port
        trio.processes["master"].kill()  # the master dies mid-write, by PID
        after_kill.set()
        _wait(lambda: trio.master_address()[1] == trio.replica_port, "the sentinel to fail over")
        try:
            # The client rediscovers the master on its next failed call; on a loaded
            # machine the promotion and that rediscovery take a few seconds.
            _wait(lambda: acked_after_kill >= 30, "writes acknowledged by the new master", 30.0)
        except AssertionError as error:
            raise AssertionError(f"{error}; last failures: {failed[-3:]}") from None
    finally:
        stop.set()
        writer.join(30)
    assert not writer.is_alive()

    fresh = RedisRegistryStore(connect(trio.url, socket_timeout=2.0), key_prefix)
    stored = {v.version: v.sha256 for v in fresh.list_versions("fraud")}
    # Every acknowledged write is present, under the number it was given.
    missing = {n: sha for n, sha in acknowledged.items() if stored.get(n) != sha}
    assert missing == {}
    # Failed writes are the only ones allowed to be absent, and nothing is stored twice.
    assert len(set(stored.values())) == len(stored)
    assert set(stored.values()) - set(acknowledged.values()) <= {
        line.split(":")[0] for line in failed
    }
    # The new master took over the counter: numbers go on past everything acknowledged.
    nxt = fresh.add_version("fraud", "f" * 64, 1, SIG, "", 0).version
    assert nxt > max(acknowledged)
