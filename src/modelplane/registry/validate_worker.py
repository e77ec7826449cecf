"""The child side of validation: runs in its own process under memory and time limits.

Started by ``sandbox.Sandbox`` (a multiprocessing forkserver child that has this
module, onnx and onnxruntime preloaded, so a validation costs a fork, not an
interpreter start). Whatever a hostile model does here -- crash onnxruntime,
spin forever, allocate without bound -- kills this process only.

Protocol on the pipe: the child reads the whole file once (so the parent may
move it), then sends ``("admitted", {...})`` or ``("error", code, message)``;
after admission it sends ``("validated", {...})`` or ``("failed", reason)``.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import external_data_helper

from modelplane.domain.errors import InvalidArgument, ModelplaneError
from modelplane.domain.models import DataType, Signature
from modelplane.registry.external_data import check_external_refs, parse_entries
from modelplane.registry.onnx_inspect import load_session, signature_of
from modelplane.registry.records import signature_to_json
from modelplane.registry.reference import check_reference_outputs, load_reference

# Largest declared dimension and element count of any tensor: anything bigger
# is a decoy meant to make a loader allocate the machine.
MAX_DIM = 2**31 - 1
MAX_ELEMENTS = 2**34
_PAGE = resource.getpagesize()


def _limit_memory(budget_bytes: int) -> None:
    """Caps the address space at what the process already maps plus ``budget_bytes``."""
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * _PAGE
    limit = mapped + budget_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # A crash must not write a core file of a model that may be large or secret.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _not_onnx(reason: str) -> InvalidArgument:
    return InvalidArgument(f"artifact is not a loadable ONNX model: {reason[:200]}")


def _check_dims(model: onnx.ModelProto) -> None:
    def check(name: str, dims: list[int]) -> None:
        elements = 1
        for dim in dims:
            if dim > MAX_DIM:
                raise InvalidArgument(
                    f"artifact: tensor {name!r:.80} declares dimension {dim}; at most {MAX_DIM}"
                )
            elements *= max(dim, 1)
        if elements > MAX_ELEMENTS:
            raise InvalidArgument(
                f"artifact: tensor {name!r:.80} declares {elements} elements; "
                f"at most {MAX_ELEMENTS}"
            )

    graph = model.graph
    for info in [*graph.input, *graph.output, *graph.value_info]:
        shape = info.type.tensor_type.shape
        check(info.name, [d.dim_value for d in shape.dim if d.HasField("dim_value")])
    for tensor in external_data_helper._get_all_tensors(model):
        check(tensor.name, list(tensor.dims))


def admit(data: bytes, base_dir: str | None) -> dict[str, Any]:
    """Parses and statically checks the model; InvalidArgument names the problem."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:
        raise _not_onnx(str(error).splitlines()[0] if str(error) else "cannot parse") from None
    if model.ir_version <= 0 or not model.graph.output:
        raise _not_onnx("no ONNX graph with outputs in the file")
    _check_dims(model)
    refs = [
        parse_entries(tensor.name, {e.key: e.value for e in tensor.external_data})
        for tensor in external_data_helper._get_all_tensors(model)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
    ]
    check_external_refs(refs, Path(base_dir) if base_dir else None)
    try:
        onnx.checker.check_model(model)
    except Exception as error:
        raise InvalidArgument(
            f"artifact fails the ONNX checker: {str(error).splitlines()[0][:200]}"
        ) from None
    opset = next(
        (op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 0
    )
    return {"opset": int(opset)}


def _probe(session: Any, signature: Signature) -> None:
    """Runs the graph once on one zero row, under this child's memory limit.

    Loading a session allocates only the weights; a graph can still ask for
    hundreds of GiB when it runs. Such a model must fail here, in the sandbox,
    not in a replica. Other errors on synthetic zeros say nothing about the
    model (its inputs may have to satisfy relations zeros do not), so only
    running out of memory fails the validation.
    """
    feeds = {}
    for spec in signature.inputs:
        shape = tuple(1 if dim < 0 else dim for dim in spec.shape)
        if spec.dtype is DataType.STRING:
            feeds[spec.name] = np.full(shape, "", dtype=object)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype.numpy_name)
    try:
        session.run(None, feeds)
    except MemoryError:
        raise
    except Exception as error:
        text = str(error).lower()
        if "alloc" in text or "memory" in text:
            raise MemoryError(str(error)) from None


def validate(data: bytes, reference: bytes | None, rtol: float, atol: float) -> dict[str, Any]:
    """Loads the model with onnxruntime and replays the reference data, if any."""
    session = load_session(data)
    signature = signature_of(session)
    _probe(session, signature)
    if reference is not None:
        parsed = load_reference(reference, rtol, atol)
        names = [output.name for output in session.get_outputs()]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, session.run(names, inputs), strict=True))

        check_reference_outputs(run, parsed)
    return {"signature": signature_to_json(signature)}


def child_main(conn: Any, path: str, options: dict[str, Any], budget_bytes: int) -> None:
    """Entry point of the child process."""
    try:
        _limit_memory(budget_bytes)
        data = Path(path).read_bytes()
    except BaseException as error:
        conn.send(("error", "INTERNAL", f"validation could not start: {error}"))
        return
    try:
        conn.send(("admitted", admit(data, options.get("base_dir"))))
    except ModelplaneError as error:
        conn.send(("error", error.code.name, error.message))
        return
    except MemoryError:
        conn.send(("error", "RESOURCE_EXHAUSTED", "artifact: parsing exceeded the memory limit"))
        return
    try:
        result = validate(
            data, options.get("reference"), options.get("rtol", 0.0), options.get("atol", 0.0)
        )
    except ModelplaneError as error:
        conn.send(("failed", error.message))
        return
    except MemoryError:
        conn.send(("failed", "validation exceeded the memory limit"))
        return
    except Exception as error:
        conn.send(("failed", f"validation error: {str(error).splitlines()[0][:200]}"))
        return
    conn.send(("validated", result))
