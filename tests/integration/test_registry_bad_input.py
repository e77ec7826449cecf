"""A corpus of bad input: each case gets a defined status, the server keeps going,
and nothing half-written remains in Redis or on disk."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import redis
from registry_models import external_data_model, huge_dims_model

from modelplane.codec.errors import ErrorInterceptor
from modelplane.control.registry_wiring import add_registry_services
from modelplane.registry.artifacts import ArtifactStore
from modelplane.registry.redis_store import RedisRegistryStore
from modelplane.registry.sources import SourcePolicy
from modelplane.registry.use_cases import Registry
from modelplane.sample_models import linear_model
from modelplane.v1 import registry_pb2, registry_pb2_grpc

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
GOOD = linear_model(seed=1)


@pytest.fixture()
def setup(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> Iterator[tuple[grpc.Channel, Path, Path]]:
    root = tmp_path / "sources"
    (root / "team").mkdir(parents=True)
    (root / "team" / "good.onnx").write_bytes(GOOD)
    (tmp_path / "outside.onnx").write_bytes(GOOD)
    artifacts = tmp_path / "artifacts"
    registry = Registry(
        RedisRegistryStore.from_url(redis_url, key_prefix),
        ArtifactStore(artifacts),
        max_upload_bytes=1 << 20,
        sources=SourcePolicy.of([root], ["file"]),
    )
    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[ErrorInterceptor()])
    add_registry_services(server, registry)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, artifacts, root
    finally:
        channel.close()
        server.stop(None)


def _requests(
    data: bytes, **header: object
) -> Iterator[registry_pb2.RegisterVersionRequest]:
    fields = {"model": "fraud", "create_model": True, **header}
    yield registry_pb2.RegisterVersionRequest(
        header=registry_pb2.RegisterVersionHeader(**fields)  # type: ignore[arg-type]
    )
    if data:
        yield registry_pb2.RegisterVersionRequest(chunk=data)


CASES = [
    ("garbage", b"\x08\x96\x01 not onnx " * 20, {}, INVALID,
     "artifact is not a loadable ONNX model: "),
    ("truncated", GOOD[: len(GOOD) // 3], {}, INVALID, "artifact is not a loadable ONNX model: "),
    ("empty", b"", {}, INVALID, "chunk: the upload is empty; expected an ONNX file"),
    ("huge dims", huge_dims_model(), {}, INVALID,
     "artifact: tensor 'x' declares dimension 10000000000000; at most 2147483647"),
    ("external absolute", external_data_model("/etc/passwd"), {}, INVALID,
     "external data of tensor 'w': location '/etc/passwd' is absolute"),
    ("external parent", external_data_model("../../etc/passwd"), {}, INVALID,
     "external data of tensor 'w': location '../../etc/passwd' leaves the artifact"),
    ("external sibling", external_data_model("upload-x"), {}, INVALID,
     "external data of tensor 'w': names file 'upload-x', which is not part of the artifact"),
    ("long name", GOOD, {"model": "m" * 129}, INVALID, "model: expected 1-128 characters"),
    ("unicode name", GOOD, {"model": "fraud\u202e"}, INVALID,
     "model: expected 1-128 characters"),
    ("bad idempotency key", GOOD, {"idempotency_key": "a b"}, INVALID,
     "idempotency_key: expected 1-128 characters"),
    ("bad reference", GOOD, {"reference_npz": b"PK\x03\x04broken"}, INVALID,
     "reference_npz: not a readable .npz file"),
    ("bad tag", GOOD, {"lineage": registry_pb2.Lineage(tags={"a b": "c"})}, INVALID,
     "lineage.tags: key 'a b'"),
    ("oversized", b"\x00" * ((1 << 20) + 1), {}, grpc.StatusCode.RESOURCE_EXHAUSTED,
     "chunk: the upload exceeds the limit of 1048576 bytes"),
]


@pytest.mark.parametrize(
    ("data", "header", "code", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_upload_has_a_defined_status_and_leaves_nothing(
    setup: tuple[grpc.Channel, Path, Path],
    redis_url: str,
    key_prefix: str,
    data: bytes,
    header: dict[str, object],
    code: grpc.StatusCode,
    message: str,
) -> None:
    channel, artifacts, _ = setup
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.RegisterVersion(_requests(data, **header), timeout=60)
    assert info.value.code() == code
    assert (info.value.details() or "").startswith(message)
    _assert_nothing_written(redis_url, key_prefix, artifacts)
    # Still serving: a good upload right after works.
    assert stub.RegisterVersion(_requests(GOOD), timeout=60).version == 1


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("/team/../../outside.onnx", "has an empty, '.' or '..' path segment"),
        ("/team/%2e%2e/%2e%2e/outside.onnx", "contains a backslash, percent-encoding"),
        ("/team\\..\\..\\outside.onnx", "contains a backslash, percent-encoding"),
    ],
)
def test_source_uri_traversal_is_refused(
    setup: tuple[grpc.Channel, Path, Path],
    redis_url: str,
    key_prefix: str,
    suffix: str,
    message: str,
) -> None:
    channel, artifacts, root = setup
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.RegisterVersion(_requests(b"", source_uri=f"file://{root}{suffix}"), timeout=60)
    assert info.value.code() == INVALID
    assert message in (info.value.details() or "")
    _assert_nothing_written(redis_url, key_prefix, artifacts)
    good = stub.RegisterVersion(
        _requests(b"", source_uri=f"file://{root}/team/good.onnx"), timeout=60
    )
    assert good.status == registry_pb2.VERSION_STATUS_READY


def test_invalid_utf8_in_a_name_is_refused_and_the_server_keeps_going(
    setup: tuple[grpc.Channel, Path, Path], redis_url: str, key_prefix: str
) -> None:
    channel, artifacts, _ = setup
    # Hand-encoded: header{model: b"\xff\xfe"}; no protobuf library will build it.
    raw = b"\x0a\x04\x0a\x02\xff\xfe"
    call: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(
        "/modelplane.v1.RegistryService/RegisterVersion",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.RpcError) as info:
        call(iter([raw]), timeout=10)
    # grpc refuses a request it cannot deserialize before any servicer code runs.
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "deserializ" in (info.value.details() or "").lower()
    _assert_nothing_written(redis_url, key_prefix, artifacts)
    stub = registry_pb2_grpc.RegistryServiceStub(channel)
    assert stub.RegisterVersion(_requests(GOOD), timeout=60).version == 1


def _assert_nothing_written(redis_url: str, key_prefix: str, artifacts: Path) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.keys(f"{key_prefix}:*") == []
    finally:
        client.close()
    files = [p for p in artifacts.rglob("*") if p.is_file()] if artifacts.exists() else []
    assert files == []
