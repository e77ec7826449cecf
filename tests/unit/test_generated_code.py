"""The checked-in generated code is exactly what `make proto` produces."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Every package the generator writes, as (path under the output, path in src/).
PACKAGES = [("modelplane/v1", "src/modelplane/v1"), ("modelplane/oip", "src/modelplane/oip")]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    subprocess.run(
        [sys.executable, str(ROOT / "protos" / "generate.py"), str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.mark.parametrize(("fresh_dir", "checked_in_dir"), PACKAGES)
def test_checked_in_protobuf_code_matches_the_generator(
    generated: Path, fresh_dir: str, checked_in_dir: str
) -> None:
    fresh_path = generated / fresh_dir
    checked_in = ROOT / checked_in_dir
    fresh = sorted(p.name for p in fresh_path.iterdir() if p.is_file())
    assert fresh, "the generator produced nothing"
    committed = sorted(p.name for p in checked_in.iterdir() if p.is_file())
    assert fresh == committed, "generated files differ from the checked-in set: run `make proto`"
    _, mismatch, errors = filecmp.cmpfiles(fresh_path, checked_in, fresh, shallow=False)
    stale = mismatch + errors
    assert not stale, f"stale generated code {stale}: run `make proto`"


def test_the_inference_protocol_is_not_a_top_level_package(generated: Path) -> None:
    # Package "inference" would otherwise become a top-level Python package that
    # clashes with any other copy of the protocol a user has installed.
    assert not (generated / "inference").exists()
    grpc_module = (generated / "modelplane/oip/grpc_service_pb2_grpc.py").read_text()
    assert "from modelplane.oip import grpc_service_pb2" in grpc_module
    assert "\nimport grpc_service_pb2" not in grpc_module
