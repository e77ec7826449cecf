"""The promotion contract check: what callers send must still be accepted."""

from __future__ import annotations

from modelplane.domain.models import DataType, Signature, TensorSpec
from modelplane.experiments.contract import contract_differences

F32, I64 = DataType.FLOAT32, DataType.INT64


def _sig(inputs: list[tuple[str, DataType, tuple[int, ...]]],
         outputs: list[tuple[str, DataType, tuple[int, ...]]]) -> Signature:
    return Signature(
        inputs=tuple(TensorSpec(n, d, s) for n, d, s in inputs),
        outputs=tuple(TensorSpec(n, d, s) for n, d, s in outputs),
    )


CURRENT = _sig([("x", F32, (-1, 16))], [("y", F32, (-1, 4))])


def test_identical_and_more_permissive_signatures_are_compatible() -> None:
    assert contract_differences(CURRENT, CURRENT) == []
    wider = _sig([("x", F32, (-1, -1))], [("y", F32, (-1, 4))])
    assert contract_differences(CURRENT, wider) == []


def test_every_difference_is_listed() -> None:
    candidate = _sig(
        [("x", I64, (-1, 8)), ("mask", F32, (-1, 16))],
        [("z", F32, (-1, 4))],
    )
    assert contract_differences(CURRENT, candidate) == [
        "input 'mask' is required by the candidate but callers do not send it",
        "input 'x': callers send [-1,16], candidate takes [-1,8]",
        "input 'x': callers send float32, candidate takes int64",
        "output 'y' is read by callers but not produced",
    ]


def test_fixed_batch_dimension_refuses_callers_sending_any_batch() -> None:
    fixed = _sig([("x", F32, (1, 16))], [("y", F32, (1, 4))])
    assert contract_differences(CURRENT, fixed) == [
        "input 'x': callers send [-1,16], candidate takes [1,16]"
    ]
