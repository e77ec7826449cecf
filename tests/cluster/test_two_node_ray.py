"""The data plane on an existing 2-node Ray cluster, reached through one client address.

The test starts a Ray head (127.0.0.1) and a second node joined with
``ray start --address`` (127.0.0.2), each with one CPU and a resource of its own,
in temp dirs of their own, and stops both by PID. ``modelplane up --ray-address``
then runs the data plane there: two replicas of one CPU each, so Ray must put one
on each node; with ``MODELPLANE_BIND_NODE_IP`` each listens on its node's address.
The client-side resolver, fed by the control plane's replica directory, opens one
round-robin channel over both, and every node answers predictions.

Heavy on a 2-core machine (two raylets, a GCS, a Serve controller, two replicas):
it runs with ``make cluster-test`` (``MODELPLANE_CLUSTER_TEST=1``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest

from modelplane.client import ModelplaneClient, build_predict_request, outputs_of
from modelplane.registry.embedded_redis import free_port
from modelplane.resolver import ReplicaResolver, channel_target
from modelplane.sample_models import linear_model, reference_linear
from modelplane.v1 import inference_pb2

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        os.environ.get("MODELPLANE_CLUSTER_TEST") != "1",
        reason="starts a 2-node Ray cluster (~1-2 min on 2 cores): `make cluster-test`",
    ),
]

BIN = Path(sys.executable).parent
HEAD_IP, WORKER_IP = "127.0.0.1", "127.0.0.2"
X = np.random.default_rng(4).standard_normal((3, 16)).astype(np.float32)
# A throwaway cluster on loopback: no token (a node joining would need the head's),
# no usage reporting.
# As the README asks of a cluster's nodes: replicas are workers, at nice 15 otherwise.
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_worker_niceness": "0",
}


def wait_for(check: object, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as error:  # still starting
            last = error
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def stop_by_pid(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def leftovers(marker: str) -> list[psutil.Process]:
    """Processes whose command line names our own temp dir: ours, and nobody else's."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if marker in cmdline:
            found.append(process)
    return found


@dataclass
class Cluster:
    address: str
    temp_root: Path


@pytest.fixture()
def cluster() -> Iterator[Cluster]:
    # Short paths: Ray's Unix sockets live under the temp dir (108-byte limit).
    temp_root = Path(tempfile.mkdtemp(prefix="mp2n", dir="/tmp"))
    env = {**os.environ, **RAY_ENV}
    port = free_port()
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    started: list[subprocess.Popen[bytes]] = []
    try:
        started.append(
            subprocess.Popen(
                [
                    str(BIN / "ray"), "start", "--head", f"--port={port}",
                    f"--node-ip-address={HEAD_IP}", '--resources={"mp_head": 1}',
                    "--include-dashboard=false", f"--temp-dir={temp_root / 'h'}", *common,
                ],
                env=env, stdout=(temp_root / "head.log").open("wb"), stderr=subprocess.STDOUT,
            )
        )
        wait_for(lambda: port_open(HEAD_IP, port), "the Ray head", 90)
        started.append(
            subprocess.Popen(
                [
                    str(BIN / "ray"), "start", f"--address={HEAD_IP}:{port}",
                    f"--node-ip-address={WORKER_IP}", '--resources={"mp_worker": 1}',
                    f"--temp-dir={temp_root / 'w'}", *common,
                ],
                env=env, stdout=(temp_root / "worker.log").open("wb"), stderr=subprocess.STDOUT,
            )
        )
        yield Cluster(f"{HEAD_IP}:{port}", temp_root)
    finally:
        for process in reversed(started):
            stop_by_pid(process)
        # Ray's own children die with their node; anything left carrying our temp
        # dir is ours and is stopped by its PID.
        for process in leftovers(str(temp_root)):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        shutil.rmtree(temp_root, ignore_errors=True)


def test_replicas_on_both_nodes_answer_behind_one_client_address(
    cluster: Cluster, redis_url: str, key_prefix: str
) -> None:
    data_dir = cluster.temp_root / "mp"
    control_port, inference_port = free_port(), free_port()
    env = {
        **os.environ,
        "MODELPLANE_KEY_PREFIX": key_prefix,
        "MODELPLANE_REPLICA_NUM_CPUS": "1",  # one per node: Ray must spread them
        "MODELPLANE_BIND_NODE_IP": "true",
        "MODELPLANE_AUTH_ENABLED": "false",
        "MODELPLANE_TELEMETRY_ENABLED": "false",
        **RAY_ENV,
    }
    up = subprocess.Popen(
        [
            str(BIN / "modelplane"), "up", "--ray-address", cluster.address,
            "--redis-url", redis_url, "--data-dir", str(data_dir), "--host", HEAD_IP,
            "--control-port", str(control_port), "--inference-port", str(inference_port),
            "--replicas", "2",
        ],
        env=env, stdout=(cluster.temp_root / "up.log").open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        try:
            wait_for(lambda: (data_dir / "run.json").exists() or up.poll() is not None, "up", 240)
            assert up.poll() is None, "up exited"
        except AssertionError as error:
            logs = "\n".join(
                f"--- {name}\n" + (cluster.temp_root / name).read_text()[-2000:]
                for name in ("head.log", "worker.log", "up.log")
            )
            raise AssertionError(f"{error}\n{logs}") from error
        control = json.loads((data_dir / "run.json").read_text())["control_address"]
        with ModelplaneClient(control) as client:
            version = client.register("spread", linear_model(seed=21))
            stored = client.get_version("spread", version.version)
            assert [i.name for i in stored.signature.inputs] == ["x"], stored
            client.set_route("spread-endpoint", [("spread", version.version, 100)])

            def both_ready() -> bool:
                (entry,) = [g for g in client.status().groups if g.group.name == "default"]
                return len(entry.replicas) == 2 and all(r.ready for r in entry.replicas)

            wait_for(both_ready, "two ready replicas", 60)
            (entry,) = [g for g in client.status().groups if g.group.name == "default"]
            nodes = {r.node for r in entry.replicas}
            addresses = {r.address for r in entry.replicas}
            assert len(nodes) == 2, nodes
            # Each replica advertises its own node's address.
            assert len(addresses) == 2, addresses
            assert f"{WORKER_IP}:{inference_port}" in addresses
            assert all(f"spread:{version.version}" in r.loaded for r in entry.replicas)

            # One client-facing address: a round-robin channel over the directory.
            resolver = ReplicaResolver(client)
            try:
                assert resolver.refresh()
                assert channel_target(resolver.addresses()).startswith("ipv4:")
                stub = resolver.inference_stub()
                request = build_predict_request("spread-endpoint", {"x": X})
                for _ in range(20):
                    response: inference_pb2.PredictResponse = stub.Predict(request, timeout=10)
                    np.testing.assert_allclose(
                        outputs_of(response)["y"], reference_linear(X, seed=21), atol=1e-5
                    )
            finally:
                resolver.close()
            # And each node's replica answers on its own.
            for address in sorted(addresses):
                with ModelplaneClient(control, address) as direct:
                    answer = direct.predict("spread-endpoint", {"x": X})
                assert answer.version == version.version
    finally:
        stop_by_pid(up)
    assert up.returncode == 0, (cluster.temp_root / "up.log").read_text()[-3000:]
