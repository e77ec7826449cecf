"""Registering a large model against copying the same file on the same disk.

The registry streams the upload to the artifact store while hashing it, then
validates it in a sandboxed child. The target: registration costs at most 2x the
plain copy, plus validation. Validation is timed on its own on the same file (the
same sandbox the control plane uses), so the ratio isolates the transfer path.

    python -m loadtests.register_bench [--megabytes 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.models import large_model
from loadtests.report_file import write_report


def model_of_megabytes(megabytes: int) -> bytes:
    # hidden x bottleneck floats dominate: pick the bottleneck for the size asked.
    hidden = 8192
    bottleneck = max(16, megabytes * 1024 * 1024 // 4 // hidden)
    return large_model(n_in=64, hidden=hidden, bottleneck=bottleneck, n_out=16)


def time_copy(source: Path, directory: Path) -> float:
    target = directory / "copy.onnx"
    began = time.perf_counter()
    shutil.copyfile(source, target)
    elapsed = time.perf_counter() - began
    target.unlink()
    return elapsed


def time_validation(source: Path) -> float:
    from modelplane.registry.sandbox import Sandbox

    began = time.perf_counter()
    validation = Sandbox().start(str(source), {"reference": None, "rtol": 0.0, "atol": 0.0})
    try:
        validation.admitted()
        findings, reason = validation.outcome()
    finally:
        validation.kill()
    if findings is None:
        raise RuntimeError(f"validation failed: {reason}")
    return time.perf_counter() - began


def run(megabytes: int, rounds: int) -> dict[str, Any]:
    from modelplane.client import ModelplaneClient
    from modelplane.config import Settings
    from modelplane.control.server import ControlPlane
    from modelplane.registry.embedded_redis import EmbeddedRedis

    with tempfile.TemporaryDirectory(prefix="mp-register-") as tmp:
        work = Path(tmp)
        source = work / "large.onnx"
        source.write_bytes(model_of_megabytes(megabytes))
        size = source.stat().st_size
        settings = Settings(data_dir=work / "data", control_port=0)
        artifact_dir = settings.resolved_artifact_root
        artifact_dir.mkdir(parents=True, exist_ok=True)
        with EmbeddedRedis(work / "redis") as redis_server:
            control = ControlPlane(settings, redis_server.url)
            control.start()
            try:
                copies, validations, registrations = [], [], []
                with ModelplaneClient(control.address) as client:
                    for i in range(rounds):
                        copies.append(time_copy(source, artifact_dir))
                        validations.append(time_validation(source))
                        # Identical bytes share one artifact: the content-addressed store
                        # still streams, hashes and validates every upload in full.
                        began = time.perf_counter()
                        version = client.register("large", source, description=f"round {i}")
                        registrations.append(time.perf_counter() - began)
                        if version.status != 1:  # VERSION_STATUS_READY
                            raise RuntimeError(f"registration ended {version.status_reason}")
            finally:
                control.stop()
    copy_s = statistics.median(copies)
    validation_s = statistics.median(validations)
    register_s = statistics.median(registrations)
    return {
        "bytes": size,
        "copy_s": copy_s,
        "validation_s": validation_s,
        "register_s": register_s,
        "register_minus_validation_over_copy": (register_s - validation_s) / copy_s,
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.megabytes, args.rounds)
    print(
        f"{result['bytes'] / 1e6:.1f} MB: copy {result['copy_s']:.3f} s, "
        f"validation {result['validation_s']:.3f} s, register {result['register_s']:.3f} s; "
        f"(register - validation) / copy = {result['register_minus_validation_over_copy']:.2f}"
    )
    write_report(result, "register")
    return 0


if __name__ == "__main__":
    sys.exit(main())
