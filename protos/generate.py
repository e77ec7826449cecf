"""Generate the Python code and .pyi stubs for every .proto under protos/.

Usage: python protos/generate.py OUT_DIR

The proto package ``modelplane.v1`` lands in ``OUT_DIR/modelplane/v1`` so the
generated imports resolve without rewriting. The suite runs this into a
temporary directory and fails when the checked-in code differs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    # protoc finds the mypy-protobuf plugins on PATH; they live beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Packages need an __init__.py to be importable and found by setuptools.
    for proto in sources:
        package_dir = (out_dir / proto).parent
        while package_dir != out_dir:
            init = package_dir / "__init__.py"
            if not init.exists() and package_dir.name != "modelplane":
                init.write_text('"""Generated from protos/; regenerate with `make proto`."""\n')
            package_dir = package_dir.parent


if __name__ == "__main__":
    generate(Path(sys.argv[1]))
