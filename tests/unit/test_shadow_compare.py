"""Comparing shadow answers with the primary's, and summing replicas' books."""

from __future__ import annotations

import math

import numpy as np

from modelplane.domain.models import VersionKey
from modelplane.routing.shadow import ShadowBook, compare, merge_books

P, S = VersionKey("m", 1), VersionKey("m", 2)


def test_equal_outputs_agree_with_zero_difference() -> None:
    y = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = compare({"y": y}, {"y": y.copy()})
    assert result.agreed
    assert result.mean_abs_diff == 0.0
    assert result.max_abs_diff == 0.0


def test_different_outputs_disagree_and_report_the_differences() -> None:
    y = np.zeros((2, 2), dtype=np.float32)
    other = np.array([[0.0, 1.0], [0.0, 3.0]], dtype=np.float32)
    result = compare({"y": y}, {"y": other})
    assert not result.agreed
    assert result.mean_abs_diff == 1.0
    assert result.max_abs_diff == 3.0


def test_a_shape_mismatch_is_total_disagreement() -> None:
    result = compare({"y": np.zeros((2, 4))}, {"y": np.zeros((2, 3))})
    assert not result.agreed
    assert math.isinf(result.max_abs_diff)


def test_books_of_several_replicas_sum_per_pair() -> None:
    first, second = ShadowBook(), ShadowBook()
    same = compare({"y": np.ones(3)}, {"y": np.ones(3)})
    off = compare({"y": np.ones(3)}, {"y": np.zeros(3)})
    first.record("e", P, S, same)
    first.record("e", P, S, off)
    second.record("e", P, S, same)
    second.record_error("e", P, S)
    second.record("other", P, S, same)
    (tally,) = merge_books([first.to_json(), second.to_json()], endpoint="e")
    assert (tally.compared, tally.agreed, tally.errors, tally.replicas) == (3, 2, 1, 2)
    assert tally.agreement == 2 / 3
    assert tally.mean_abs_diff == 1 / 3
    assert tally.max_abs_diff == 1.0
    assert len(merge_books([first.to_json(), second.to_json()])) == 2
