"""Registry and routing over a real gRPC server, a real Redis and real onnxruntime."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.registry_wiring import add_registry_services
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model
from modelplane.v1 import (
    registry_pb2,
    registry_pb2_grpc,
    routing_pb2,
    routing_pb2_grpc,
    tensor_pb2,
)

pytestmark = pytest.mark.integration

MAX_UPLOAD = 64 * 1024


@dataclass
class Plane:
    registry: registry_pb2_grpc.RegistryServiceStub
    routing: routing_pb2_grpc.RoutingServiceStub
    artifact_root: Path


@pytest.fixture()
def plane(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Plane]:
    artifact_root = tmp_path / "artifacts"
    registry = Registry(
        RedisRegistryStore.from_url(redis_url, key_prefix),
        ArtifactStore(artifact_root),
        replicas=None,
        max_upload_bytes=MAX_UPLOAD,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[ErrorInterceptor()]
    )
    add_registry_services(server, registry)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Plane(
            registry_pb2_grpc.RegistryServiceStub(channel),
            routing_pb2_grpc.RoutingServiceStub(channel),
            artifact_root,
        )
    finally:
        channel.close()
        server.stop(grace=None)


def _upload(
    model: str, data: bytes, chunk: int = 100, create_model: bool = False
) -> Iterator[registry_pb2.RegisterVersionRequest]:
    yield registry_pb2.RegisterVersionRequest(
        header=registry_pb2.RegisterVersionHeader(
            model=model, description="test upload", create_model=create_model
        )
    )
    for start in range(0, len(data), chunk):
        yield registry_pb2.RegisterVersionRequest(chunk=data[start : start + chunk])


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _rpc_error(call: object) -> grpc.RpcError:
    assert isinstance(call, grpc.RpcError)
    return call


# ------------------------------------------------------------------------- registry


def test_register_a_real_model_streamed_in_small_chunks(plane: Plane) -> None:
    data = linear_model(n_in=16, n_out=4, seed=3)
    version = plane.registry.RegisterVersion(
        _upload("fraud", data, chunk=97, create_model=True), timeout=30
    )
    sha = hashlib.sha256(data).hexdigest()
    assert (version.model, version.version, version.sha256) == ("fraud", 1, sha)
    assert version.size_bytes == len(data)
    assert version.status == registry_pb2.VERSION_STATUS_READY
    assert version.description == "test upload"
    assert [(s.name, s.dtype, list(s.shape)) for s in version.signature.inputs] == [
        ("x", tensor_pb2.DATA_TYPE_FLOAT32, [-1, 16])
    ]
    assert [(s.name, list(s.shape)) for s in version.signature.outputs] == [("y", [-1, 4])]

    stored = plane.artifact_root / "sha256" / sha[:2] / f"{sha}.onnx"
    assert stored.read_bytes() == data
    assert _files(plane.artifact_root) == [stored]

    assert plane.registry.GetVersion(
        registry_pb2.GetVersionRequest(model="fraud", version=1), timeout=10
    ) == version
    second = plane.registry.RegisterVersion(_upload("fraud", data), timeout=30)
    assert second.version == 2
    listed = plane.registry.ListVersions(registry_pb2.ListVersionsRequest(model="fraud"))
    assert [v.version for v in listed.versions] == [1, 2]
    assert plane.registry.GetModel(registry_pb2.GetModelRequest(name="fraud")).latest_version == 2


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"this is not an onnx file at all \x00\x01\x02" * 10, id="garbage"),
        pytest.param(linear_model()[: len(linear_model()) // 2], id="truncated"),
    ],
)
def test_bad_upload_is_invalid_argument_and_leaves_nothing(plane: Plane, payload: bytes) -> None:
    plane.registry.CreateModel(registry_pb2.CreateModelRequest(name="fraud"), timeout=10)
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.RegisterVersion(_upload("fraud", payload), timeout=30)
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("artifact is not a loadable ONNX model: ")
    assert _files(plane.artifact_root) == []
    listed = plane.registry.ListVersions(registry_pb2.ListVersionsRequest(model="fraud"))
    assert list(listed.versions) == []
    assert plane.registry.GetModel(registry_pb2.GetModelRequest(name="fraud")).latest_version == 0


def test_bad_upload_with_create_model_creates_no_model(plane: Plane) -> None:
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.RegisterVersion(
            _upload("fresh", b"garbage" * 50, create_model=True), timeout=30
        )
    assert _rpc_error(info.value).code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.GetModel(registry_pb2.GetModelRequest(name="fresh"), timeout=10)
    assert _rpc_error(info.value).code() == grpc.StatusCode.NOT_FOUND
    assert _files(plane.artifact_root) == []


def test_upload_to_unknown_model_is_not_found(plane: Plane) -> None:
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.RegisterVersion(_upload("ghost", linear_model()), timeout=30)
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "model 'ghost' not found"
    assert _files(plane.artifact_root) == []


def test_oversized_upload_is_resource_exhausted(plane: Plane) -> None:
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.RegisterVersion(
            _upload("big", b"\x00" * (MAX_UPLOAD + 1), chunk=16 * 1024, create_model=True),
            timeout=30,
        )
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == f"chunk: the upload exceeds the limit of {MAX_UPLOAD} bytes"
    assert _files(plane.artifact_root) == []


def test_stream_framing_is_checked(plane: Plane) -> None:
    plane.registry.CreateModel(registry_pb2.CreateModelRequest(name="fraud"), timeout=10)
    chunk_first = iter([registry_pb2.RegisterVersionRequest(chunk=b"abc")])
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.RegisterVersion(chunk_first, timeout=10)
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "header: the first message must carry the header"

    header = next(_upload("fraud", b""))
    twice = iter([header, registry_pb2.RegisterVersionRequest(chunk=b"abc"), header])
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.RegisterVersion(twice, timeout=10)
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "header: only the first message may carry the header; message 3 must carry a chunk"
    )

    with pytest.raises(grpc.RpcError) as info:
        plane.registry.RegisterVersion(iter([header]), timeout=10)
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "chunk: the upload is empty; expected an ONNX file"
    assert _files(plane.artifact_root) == []


def test_models_and_aliases(plane: Plane) -> None:
    created = plane.registry.CreateModel(
        registry_pb2.CreateModelRequest(name="fraud", description="card fraud"), timeout=10
    )
    assert created.created_at.seconds > 0
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.CreateModel(registry_pb2.CreateModelRequest(name="fraud"), timeout=10)
    assert _rpc_error(info.value).code() == grpc.StatusCode.ALREADY_EXISTS
    assert _rpc_error(info.value).details() == "model 'fraud' already exists"

    with pytest.raises(grpc.RpcError) as info:
        plane.registry.CreateModel(registry_pb2.CreateModelRequest(name="bad name"), timeout=10)
    assert _rpc_error(info.value).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (_rpc_error(info.value).details() or "").startswith("name: expected 1-128 characters")

    plane.registry.RegisterVersion(_upload("fraud", linear_model()), timeout=30)
    alias = plane.registry.SetAlias(
        registry_pb2.SetAliasRequest(model="fraud", alias="prod", version=1), timeout=10
    )
    assert (alias.model, alias.alias, alias.version) == ("fraud", "prod", 1)
    assert plane.registry.GetAlias(
        registry_pb2.GetAliasRequest(model="fraud", alias="prod"), timeout=10
    ) == alias
    models = plane.registry.ListModels(registry_pb2.ListModelsRequest(), timeout=10).models
    assert [(m.name, dict(m.aliases)) for m in models] == [("fraud", {"prod": 1})]

    with pytest.raises(grpc.RpcError) as info:
        plane.registry.SetAlias(
            registry_pb2.SetAliasRequest(model="fraud", alias="next", version=5), timeout=10
        )
    assert _rpc_error(info.value).code() == grpc.StatusCode.NOT_FOUND
    assert _rpc_error(info.value).details() == "version 5 of model 'fraud' not found"

    plane.registry.DeleteAlias(registry_pb2.DeleteAliasRequest(model="fraud", alias="prod"))
    with pytest.raises(grpc.RpcError) as info:
        plane.registry.GetAlias(registry_pb2.GetAliasRequest(model="fraud", alias="prod"))
    assert _rpc_error(info.value).code() == grpc.StatusCode.NOT_FOUND
    assert _rpc_error(info.value).details() == "alias 'prod' of model 'fraud' not found"


# -------------------------------------------------------------------------- routing


def _target(
    weight: int, version: int | None = None, alias: str | None = None
) -> routing_pb2.RouteTarget:
    target = routing_pb2.RouteTarget(model="fraud", weight=weight)
    if version is not None:
        target.version = version
    if alias is not None:
        target.alias = alias
    return target


def test_routes_compare_and_set(plane: Plane) -> None:
    plane.registry.RegisterVersion(
        _upload("fraud", linear_model(), create_model=True), timeout=30
    )
    plane.registry.RegisterVersion(_upload("fraud", linear_model(seed=2)), timeout=30)
    plane.registry.SetAlias(registry_pb2.SetAliasRequest(model="fraud", alias="canary", version=2))

    route = plane.routing.SetRoute(
        routing_pb2.SetRouteRequest(
            endpoint="score",
            targets=[_target(90, version=1), _target(10, alias="canary")],
            expected_revision=0,
        ),
        timeout=10,
    )
    assert route.revision == 1
    assert [t.WhichOneof("ref") for t in route.targets] == ["version", "alias"]

    with pytest.raises(grpc.RpcError) as info:
        plane.routing.SetRoute(
            routing_pb2.SetRouteRequest(
                endpoint="score", targets=[_target(1, version=2)], expected_revision=0
            ),
            timeout=10,
        )
    error = _rpc_error(info.value)
    assert error.code() == grpc.StatusCode.ABORTED
    assert error.details() == (
        "endpoint 'score': expected revision 0, current revision is 1; re-read the route and retry"
    )
    assert plane.routing.GetRoute(routing_pb2.GetRouteRequest(endpoint="score")) == route

    moved = plane.routing.SetRoute(
        routing_pb2.SetRouteRequest(
            endpoint="score", targets=[_target(1, version=2)], expected_revision=1
        ),
        timeout=10,
    )
    assert moved.revision == 2
    listed = plane.routing.ListRoutes(routing_pb2.ListRoutesRequest(), timeout=10).routes
    assert list(listed) == [moved]

    plane.routing.DeleteRoute(routing_pb2.DeleteRouteRequest(endpoint="score", expected_revision=2))
    with pytest.raises(grpc.RpcError) as info:
        plane.routing.GetRoute(routing_pb2.GetRouteRequest(endpoint="score"), timeout=10)
    assert _rpc_error(info.value).code() == grpc.StatusCode.NOT_FOUND
    assert _rpc_error(info.value).details() == "endpoint 'score' not found"


@pytest.mark.parametrize(
    ("targets", "code", "details"),
    [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "targets: expected at least one target"),
        (
            [_target(0, version=1), _target(0, version=1)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "targets[*].weight: expected the weights to sum to more than 0, got 0",
        ),
        (
            [_target(1)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "targets[0]: expected exactly one of version or alias, got neither",
        ),
        (
            [_target(1, version=1), _target(1, version=9)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "targets[1].version: version 9 of model 'fraud' not found",
        ),
        (
            [_target(1, alias="prod")],
            grpc.StatusCode.INVALID_ARGUMENT,
            "targets[0].alias: alias 'prod' of model 'fraud' not found",
        ),
    ],
)
def test_bad_routes_are_rejected(
    plane: Plane, targets: list[routing_pb2.RouteTarget], code: grpc.StatusCode, details: str
) -> None:
    plane.registry.RegisterVersion(
        _upload("fraud", linear_model(), create_model=True), timeout=30
    )
    with pytest.raises(grpc.RpcError) as info:
        plane.routing.SetRoute(
            routing_pb2.SetRouteRequest(endpoint="score", targets=targets), timeout=10
        )
    error = _rpc_error(info.value)
    assert error.code() == code
    assert error.details() == details
