"""Generate the Python code and .pyi stubs for every .proto under protos/.

Usage: python protos/generate.py OUT_DIR

The proto package ``modelplane.v1`` lands in ``OUT_DIR/modelplane/v1`` so the
generated imports resolve without rewriting. The Open Inference Protocol's
package ``inference`` (protos/inference/) lands in ``OUT_DIR/modelplane/oip``,
never in a top-level ``inference`` package: it is compiled from its own root and
its generated modules' sibling imports are rewritten to ``modelplane.oip``. The
suite runs this into a temporary directory and fails when the checked-in code
differs.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
OIP_ROOT = PROTO_ROOT / "inference"
OIP_PACKAGE = "modelplane.oip"


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    # protoc finds the mypy-protobuf plugins on PATH; they live beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    sources = sorted(
        str(p.relative_to(PROTO_ROOT))
        for p in PROTO_ROOT.rglob("*.proto")
        if not p.is_relative_to(OIP_ROOT)
    )
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
    _generate_oip(out_dir, well_known)


def _generate_oip(out_dir: Path, well_known: Path) -> None:
    oip_dir = out_dir.joinpath(*OIP_PACKAGE.split("."))
    oip_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(p.name for p in OIP_ROOT.glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{OIP_ROOT}",
        f"-I{well_known}",
        f"--python_out={oip_dir}",
        f"--grpc_python_out={oip_dir}",
        f"--mypy_out={oip_dir}",
        f"--mypy_grpc_out={oip_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed for protos/inference")
    # Compiled from their own root, the modules import each other as top-level
    # names ("import grpc_service_pb2"); make those imports package-qualified.
    modules = [Path(source).stem + "_pb2" for source in sources]
    for generated in sorted(oip_dir.iterdir()):
        if generated.suffix not in (".py", ".pyi"):
            continue
        text = generated.read_text()
        for module in modules:
            text = re.sub(
                rf"^import {module}\b", f"from {OIP_PACKAGE} import {module}", text, flags=re.M
            )
        generated.write_text(text)
    (oip_dir / "__init__.py").write_text(
        '"""Generated from protos/inference/; regenerate with `make proto`."""\n'
    )


if __name__ == "__main__":
    generate(Path(sys.argv[1]))
