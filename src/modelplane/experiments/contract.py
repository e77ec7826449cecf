"""Whether a candidate version accepts what callers of the current one send.

Callers were written against the current version's signature: the candidate
must take every input they send (same dtype, and every dimension they may send
accepted), must not require an input they do not send, and must still produce
every output they read, with the same dtype and compatible dimensions.
"""

from __future__ import annotations

from modelplane.domain.models import Signature, TensorSpec


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _accepts(current: tuple[int, ...], candidate: tuple[int, ...]) -> bool:
    """The candidate takes every shape callers may send (a current -1 may be any size)."""
    return len(current) == len(candidate) and all(
        c == -1 or c == d for d, c in zip(current, candidate, strict=True)
    )


def _compatible(current: tuple[int, ...], candidate: tuple[int, ...]) -> bool:
    return len(current) == len(candidate) and all(
        a == -1 or b == -1 or a == b for a, b in zip(current, candidate, strict=True)
    )


def _by_name(specs: tuple[TensorSpec, ...]) -> dict[str, TensorSpec]:
    return {spec.name: spec for spec in specs}


def contract_differences(current: Signature, candidate: Signature) -> list[str]:
    """Every way the candidate would break callers of ``current``; empty when compatible."""
    differences: list[str] = []
    offered = _by_name(candidate.inputs)
    sent = _by_name(current.inputs)
    for name, spec in sent.items():
        new = offered.get(name)
        if new is None:
            differences.append(f"input '{name}' is sent by callers but not accepted")
            continue
        if new.dtype is not spec.dtype:
            differences.append(
                f"input '{name}': callers send {spec.dtype.value}, candidate takes "
                f"{new.dtype.value}"
            )
        if not _accepts(spec.shape, new.shape):
            differences.append(
                f"input '{name}': callers send {_shape(spec.shape)}, candidate takes "
                f"{_shape(new.shape)}"
            )
    for name in offered.keys() - sent.keys():
        differences.append(
            f"input '{name}' is required by the candidate but callers do not send it"
        )
    produced = _by_name(candidate.outputs)
    for name, spec in _by_name(current.outputs).items():
        new = produced.get(name)
        if new is None:
            differences.append(f"output '{name}' is read by callers but not produced")
            continue
        if new.dtype is not spec.dtype:
            differences.append(
                f"output '{name}': callers read {spec.dtype.value}, candidate produces "
                f"{new.dtype.value}"
            )
        if not _compatible(spec.shape, new.shape):
            differences.append(
                f"output '{name}': callers read {_shape(spec.shape)}, candidate produces "
                f"{_shape(new.shape)}"
            )
    return sorted(differences)
