"""Reference inputs and outputs stored with a version, replayed to prove it computes.

Format: an ``.npz`` (numpy's zip of arrays, read with ``allow_pickle=False``)
holding ``input.<name>`` and ``output.<name>`` arrays. At validation and again
when a replica loads the version, the inputs are run and every output must
satisfy ``|actual - expected| <= atol + rtol * |expected|``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modelplane.domain.errors import DataLoss, FailedPrecondition, InvalidArgument

DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-6
MAX_REFERENCE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ReferenceData:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL


def load_reference(
    data: bytes, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL
) -> ReferenceData:
    """Parses the .npz; InvalidArgument naming what is wrong with it."""
    if len(data) > MAX_REFERENCE_BYTES:
        raise InvalidArgument(
            f"reference_npz: expected at most {MAX_REFERENCE_BYTES} bytes, got {len(data)}"
        )
    if not (rtol >= 0 and atol >= 0):
        raise InvalidArgument(f"reference tolerance: expected rtol, atol >= 0, got {rtol}, {atol}")
    inputs: dict[str, np.ndarray] = {}
    outputs: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            for key in archive.files:
                kind, _, name = key.partition(".")
                if kind not in ("input", "output") or not name:
                    raise InvalidArgument(
                        f"reference_npz: array {key!r:.80} must be named input.<name> or "
                        "output.<name>"
                    )
                (inputs if kind == "input" else outputs)[name] = archive[key]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise InvalidArgument(f"reference_npz: not a readable .npz file: {error}") from None
    if not inputs or not outputs:
        raise InvalidArgument("reference_npz: expected at least one input.* and one output.*")
    return ReferenceData(inputs, outputs, rtol, atol)


def dump_reference(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> bytes:
    """The .npz bytes for ``inputs`` and ``outputs``; what clients upload."""
    buffer = io.BytesIO()
    arrays = {f"input.{k}": v for k, v in inputs.items()}
    arrays.update({f"output.{k}": v for k, v in outputs.items()})
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def check_reference_outputs(
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    reference: ReferenceData,
    what: str = "the model",
) -> None:
    """Runs the reference inputs through ``run`` and compares every expected output.

    FailedPrecondition when the model cannot take the inputs or lacks an output;
    DataLoss when it computes different numbers (the artifact is not what was
    validated, or the runtime disagrees).
    """
    try:
        actual = run(dict(reference.inputs))
    except Exception as error:
        raise FailedPrecondition(
            f"reference inputs do not run on {what}: {str(error).splitlines()[0][:200]}"
        ) from None
    for name, expected in reference.outputs.items():
        if name not in actual:
            raise FailedPrecondition(f"reference output {name!r}: {what} produced no such output")
        got = np.asarray(actual[name])
        if got.shape != expected.shape:
            raise DataLoss(
                f"reference output {name!r}: shape {list(got.shape)}, expected "
                f"{list(expected.shape)}"
            )
        if not np.allclose(got, expected, rtol=reference.rtol, atol=reference.atol):
            diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
            raise DataLoss(
                f"reference output {name!r}: differs by up to {float(np.max(diff)):.3g} "
                f"(rtol={reference.rtol}, atol={reference.atol})"
            )
