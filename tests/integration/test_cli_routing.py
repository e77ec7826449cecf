"""route (with shadows and fallback), rollback and shadow over a real control-plane server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from modelplane.cli import main
from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.registry_wiring import add_registry_services
from modelplane.domain.models import VersionKey
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.replicas import ReplicaDirectory
from modelplane.registry.route_prepare import RoutePreparation
from modelplane.registry.use_cases import Registry
from modelplane.routing.shadow import ShadowBook, compare
from modelplane.sample_models import linear_model
from modelplane.v1 import routing_pb2, routing_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture()
def control(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[tuple[str, Registry]]:
    store = RedisRegistryStore.from_url(redis_url, key_prefix)
    registry = Registry(
        store, ArtifactStore(tmp_path / "a"), replicas=ReplicaDirectory(store._redis, key_prefix)
    )
    for seed in (1, 2):
        registry.register_version("m", "", create_model=True, chunks=[linear_model(seed=seed)])
    registry.register_version("narrow", "", create_model=True, chunks=[linear_model(n_in=8)])
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[ErrorInterceptor()])
    add_registry_services(server, registry)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", registry
    server.stop(None)
    store._redis.close()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_route_rollback_and_shadow_commands(
    control: tuple[str, Registry], capsys: pytest.CaptureFixture[str]
) -> None:
    address, registry = control
    c = ["--control", address, "--inference", "127.0.0.1:1"]
    code, out = _run(capsys, "route", "score", "m:1", *c)
    assert (code, out.strip()) == (0, "score (revision 1) -> m:1=100")
    code, out = _run(
        capsys, "route", "score", "m:2=90", "m:1=10", "--shadow", "m:1=25", "--fallback", "m:1",
        "--sticky-input", "x", "--max-batch", "16", "--max-wait-us", "250", *c,
    )
    assert code == 0, out
    assert out.strip() == (
        "score (revision 2) -> m:2=90 m:1=10; shadow m:1=25%; fallback m:1; sticky by input 'x'"
    )
    route = registry.get_route("score")
    assert [(t.max_batch_size, t.max_wait_us) for t in route.targets] == [(16, 250)] * 2
    assert route.fallback is not None and route.fallback.version == 1

    code, out = _run(capsys, "rollback", "score", *c)
    assert (code, out.strip()) == (0, "score rolled back (revision 3) -> m:1=100")

    # A replica's published book is what `shadow` shows, summed over live replicas.
    directory = registry.replicas
    assert directory is not None
    directory.heartbeat("r1", 0, "a", "n", [], ttl_s=30)
    book = ShadowBook()
    import numpy as np

    book.record("score", VersionKey("m", 2), VersionKey("m", 1), compare({"y": np.ones(2)},
                {"y": np.ones(2)}))
    RoutePreparation(directory.client, directory.prefix).publish_book("r1", book.to_json(), 30)
    code, out = _run(capsys, "shadow", "score", *c)
    lines = out.strip().splitlines()
    assert lines[0].split()[:5] == ["ENDPOINT", "PRIMARY", "SHADOW", "COMPARED", "AGREED"]
    assert lines[-1].split()[:5] == ["score", "m:2", "m:1", "1", "100.0%"]
    assert json.loads(book.to_json())[0]["compared"] == 1


def test_grpc_status_codes_for_bad_routes(control: tuple[str, Registry]) -> None:
    address, _ = control
    with grpc.insecure_channel(address) as channel:
        stub = routing_pb2_grpc.RoutingServiceStub(channel)
        cases = [
            (
                routing_pb2.SetRouteRequest(
                    endpoint="e", targets=[routing_pb2.RouteTarget(model="m", version=1, weight=1)],
                    shadows=[routing_pb2.ShadowTarget(model="narrow", version=1, percent=5)],
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
                "shadows[0]: version 1 of model 'narrow' cannot serve the requests of targets[0] "
                "(version 1 of model 'm'): input 'x' is float32 [-1, 16] for the primary, "
                "float32 [-1, 8] for it",
            ),
            (
                routing_pb2.SetRouteRequest(
                    endpoint="e", targets=[routing_pb2.RouteTarget(model="m", version=7, weight=1)]
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "targets[0].version: version 7 of model 'm' not found",
            ),
        ]
        for request, code, details in cases:
            with pytest.raises(grpc.RpcError) as info:
                stub.SetRoute(request, timeout=10)
            assert info.value.code() == code
            assert info.value.details() == details
        with pytest.raises(grpc.RpcError) as info:
            stub.Rollback(routing_pb2.RollbackRequest(endpoint="nothing"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert info.value.details() == "endpoint 'nothing' not found"
        stub.SetRoute(
            routing_pb2.SetRouteRequest(
                endpoint="one", targets=[routing_pb2.RouteTarget(model="m", version=1, weight=1)]
            ),
            timeout=10,
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Rollback(routing_pb2.RollbackRequest(endpoint="one"), timeout=10)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert info.value.details() == (
            "endpoint 'one' has no revision before 1 to roll back to"
        )
