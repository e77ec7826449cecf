"""The checked-in generated code is exactly what `make proto` produces."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_protobuf_code_matches_the_generator(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "protos" / "generate.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = tmp_path / "modelplane" / "v1"
    checked_in = ROOT / "src" / "modelplane" / "v1"
    fresh = sorted(p.name for p in generated.iterdir() if p.is_file())
    assert fresh, "the generator produced nothing"
    committed = sorted(p.name for p in checked_in.iterdir() if p.is_file())
    assert fresh == committed, "generated files differ from the checked-in set: run `make proto`"
    _, mismatch, errors = filecmp.cmpfiles(generated, checked_in, fresh, shallow=False)
    stale = mismatch + errors
    assert not stale, f"stale generated code {stale}: run `make proto`"
