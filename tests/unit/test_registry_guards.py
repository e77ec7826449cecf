"""Pure guards of the registry: filter language, external data, URI sources, lineage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modelplane.cli.audit import parse_time
from modelplane.domain.errors import DataLoss, FailedPrecondition, InvalidArgument
from modelplane.domain.models import Lineage, ModelVersion, Signature, VersionStatus
from modelplane.registry.external_data import ExternalRef, check_external_refs, parse_entries
from modelplane.registry.filters import parse_filter
from modelplane.registry.lineage import validate_lineage
from modelplane.registry.reference import (
    ReferenceData,
    check_reference_outputs,
    dump_reference,
    load_reference,
)
from modelplane.registry.sources import SourcePolicy, read_source, resolve_source


def _version(number: int, **lineage: object) -> ModelVersion:
    return ModelVersion(
        "m", number, "0" * 64, 1, Signature((), ()), VersionStatus.READY, "", 0,
        lineage=Lineage(**lineage),  # type: ignore[arg-type]
    )


def test_filter_selects_by_metric_tag_param_status_and_version() -> None:
    versions = [
        _version(1, metrics={"auc": 0.95}, tags={"team": "risk"}),
        _version(2, metrics={"auc": 0.85}, tags={"team": "risk"}, params={"lr": "0.1"}),
        _version(3, tags={"team": "ops"}),
    ]
    def select(text: str) -> list[int]:
        parsed = parse_filter(text)
        assert parsed is not None
        return [v.version for v in parsed.select(versions)]

    assert select("metrics.auc>0.9 and tags.team=risk") == [1]
    assert select("metrics.auc >= 0.85") == [1, 2]
    assert select("tags.team='ops' or params.lr=0.1") == [2, 3]
    assert select("version<=2 AND status=ready") == [1, 2]
    assert select("metrics.missing>0") == []
    assert parse_filter("   ") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics.auc>", "where: incomplete clause"),
        ("__import__('os')", "where: unexpected character"),
        ("foo.bar=1", "where: unknown field 'foo.bar'"),
        ("metrics.auc>high", "where: metrics.auc compares numbers, got 'high'"),
        ("metrics.auc>nan", "where: metrics.auc cannot compare with NaN"),
        ("tags.a=b tags.c=d", "where: expected 'and' or 'or' after a clause"),
        ("tags.a=b and " * 40 + "tags.a=b", "where: expected at most 32 clauses"),
    ],
)
def test_filter_rejects_bad_expressions_by_name(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match="^" + message.replace("(", r"\(")):
        parse_filter(text)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("/etc/passwd", "is absolute"),
        ("C:/x", "is absolute"),
        ("../secret", "leaves the artifact"),
        ("a/../../b", "leaves the artifact"),
        ("a//b", "leaves the artifact"),
        ("..\\secret", "forbidden character"),
        ("%2e%2e/secret", "forbidden character"),
        ("", "empty location"),
    ],
)
def test_external_data_escapes_are_named(tmp_path: Path, location: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check_external_refs([ExternalRef("w", location, 0, 4)], tmp_path)


def test_external_data_links_ranges_and_single_file_artifacts(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"\x00" * 16)
    check_external_refs([ExternalRef("w", "w.bin", 8, 8)], tmp_path)
    with pytest.raises(InvalidArgument, match="past the end"):
        check_external_refs([ExternalRef("w", "w.bin", 8, 9)], tmp_path)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "s.bin").write_bytes(b"\x00" * 16)
    os.symlink(outside / "s.bin", tmp_path / "link.bin")
    with pytest.raises(InvalidArgument, match="goes through a symlink"):
        check_external_refs([ExternalRef("w", "link.bin", 0, 4)], tmp_path)
    os.symlink(outside, tmp_path / "dir")
    with pytest.raises(InvalidArgument, match="goes through a symlink"):
        check_external_refs([ExternalRef("w", "dir/s.bin", 0, 4)], tmp_path)
    os.link(outside / "s.bin", tmp_path / "hard.bin")
    with pytest.raises(InvalidArgument, match="is a hardlink"):
        check_external_refs([ExternalRef("w", "hard.bin", 0, 4)], tmp_path)
    with pytest.raises(InvalidArgument, match="not part of the artifact"):
        check_external_refs([ExternalRef("w", "w.bin", 0, 4)], None)
    with pytest.raises(InvalidArgument, match="must not be negative"):
        parse_entries("w", {"location": "w.bin", "offset": "-1"})


@pytest.fixture()
def source_root(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "team").mkdir(parents=True)
    (root / "team" / "m.onnx").write_bytes(b"onnx bytes")
    (tmp_path / "secret.onnx").write_bytes(b"secret")
    return root


def test_sources_are_disabled_by_default(source_root: Path) -> None:
    with pytest.raises(FailedPrecondition, match="registration from a URI is disabled"):
        resolve_source(f"file://{source_root}/team/m.onnx", SourcePolicy())


def test_a_plain_file_under_an_allowed_root_resolves(source_root: Path) -> None:
    policy = SourcePolicy.of([source_root], ["file"])
    path = resolve_source(f"file://{source_root}/team/m.onnx", policy)
    assert b"".join(read_source(path)) == b"onnx bytes"
    assert resolve_source(f"{source_root}/team/m.onnx", policy) == path


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("/team/../../secret.onnx", "empty, '.' or '..' path segment"),
        ("/team/..%2f..%2fsecret.onnx", "percent-encoding"),
        ("/team/%2e%2e/secret.onnx", "percent-encoding"),
        ("/team\\..\\..\\secret.onnx", "backslash"),
        ("//proc/self/root/etc/passwd", "empty, '.' or '..' path segment"),
        ("/team/./m.onnx", "empty, '.' or '..' path segment"),
        ("/team/m.onnx\x00.txt", "control character"),
        ("/team/missing.onnx", "does not exist"),
        ("/team", "is not a regular file"),
    ],
)
def test_traversal_variants_are_refused(source_root: Path, suffix: str, message: str) -> None:
    policy = SourcePolicy.of([source_root], ["file"])
    with pytest.raises(InvalidArgument, match=message):
        resolve_source(f"file://{source_root}{suffix}", policy)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://example.com/m.onnx", "uses scheme 'http'"),
        ("file://evil.host/etc/passwd", "no host"),
        ("file:relative/m.onnx", "not an absolute path"),
        ("file:///proc/self/root/etc/passwd", "not under an allowed root"),
        ("file:///etc/passwd", "not under an allowed root"),
    ],
)
def test_file_uri_tricks_are_refused(source_root: Path, uri: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        resolve_source(uri, SourcePolicy.of([source_root], ["file", "http"]))


def test_symlinked_parents_and_hardlinks_are_refused(source_root: Path, tmp_path: Path) -> None:
    policy = SourcePolicy.of([source_root], ["file"])
    os.symlink(tmp_path, source_root / "escape")
    with pytest.raises(InvalidArgument, match="goes through a symlink"):
        resolve_source(f"{source_root}/escape/secret.onnx", policy)
    os.link(tmp_path / "secret.onnx", source_root / "hard.onnx")
    with pytest.raises(InvalidArgument, match="is a hardlink"):
        resolve_source(f"{source_root}/hard.onnx", policy)


def test_reference_round_trip_and_mismatch() -> None:
    x = np.ones((2, 3), np.float32)
    data = load_reference(dump_reference({"x": x}, {"y": x * 2}))
    check_reference_outputs(lambda inputs: {"y": inputs["x"] * 2}, data)
    with pytest.raises(DataLoss, match=r"reference output 'y': differs by up to 0\.5"):
        check_reference_outputs(lambda inputs: {"y": inputs["x"] * 2.5}, data)
    with pytest.raises(FailedPrecondition, match="produced no such output"):
        check_reference_outputs(lambda inputs: {"z": inputs["x"]}, data)
    loose = ReferenceData(data.inputs, data.outputs, rtol=0.5, atol=0)
    check_reference_outputs(lambda inputs: {"y": inputs["x"] * 2.5}, loose)
    with pytest.raises(InvalidArgument, match=r"not a readable \.npz"):
        load_reference(b"not a zip")


def test_lineage_bounds() -> None:
    validate_lineage(Lineage(metrics={"auc": 0.9}, tags={"team": "risk"}))
    with pytest.raises(InvalidArgument, match=r"lineage\.metrics\[auc\]: expected a finite"):
        validate_lineage(Lineage(metrics={"auc": float("inf")}))
    with pytest.raises(InvalidArgument, match=r"lineage\.tags: key 'bad key'"):
        validate_lineage(Lineage(tags={"bad key": "x"}))
    with pytest.raises(InvalidArgument, match=r"lineage\.code_commit: expected printable"):
        validate_lineage(Lineage(code_commit="abc\x1b[31m"))


def test_parse_time_forms() -> None:
    assert parse_time("1700000000") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20+00:00") == 1_700_000_000_000
    with pytest.raises(ValueError, match="expected ISO 8601"):
        parse_time("yesterday")
