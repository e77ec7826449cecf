"""The run filter and ordering: numbers compare as numbers, bad input is named."""

from __future__ import annotations

import pytest

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.experiments import Run, RunStatus
from modelplane.experiments.query import order_runs, parse_order, parse_where


def _run(run_id: str, start: int, lr: str | None, auc: float | None, **tags: str) -> Run:
    return Run(
        run_id=run_id,
        experiment="fraud",
        name=run_id,
        status=RunStatus.FINISHED,
        start_ms=start,
        params={} if lr is None else {"lr": lr},
        metrics={} if auc is None else {"auc": auc},
        tags=tags,
    )


RUNS = [
    _run("a", 1, "0.001", 0.95, team="risk"),
    _run("b", 2, "0.1", 0.97, team="risk"),
    _run("c", 3, "0.005", 0.91),
    _run("d", 4, "1e-4", 0.85),
    _run("e", 5, None, 0.99),
    _run("f", 6, "adam", None),
]


def _ids(runs: list[Run]) -> list[str]:
    return [r.run_id for r in runs]


def test_params_compare_as_numbers_and_metrics_filter() -> None:
    matcher = parse_where("metrics.auc>0.9 and params.lr<0.01")
    assert matcher is not None
    # "1e-4" < 0.01 as a number (it would not be as text); "0.1" is not.
    assert _ids(matcher.select(RUNS)) == ["a", "c"]
    matcher = parse_where("params.lr<0.01")
    assert matcher is not None
    assert _ids(matcher.select(RUNS)) == ["a", "c", "d"]


def test_or_text_and_status_clauses() -> None:
    matcher = parse_where("tags.team=risk or params.lr='adam'")
    assert matcher is not None
    assert _ids(matcher.select(RUNS)) == ["a", "b", "f"]
    matcher = parse_where("status=finished and experiment=fraud and metrics.auc>=0.99")
    assert matcher is not None
    assert _ids(matcher.select(RUNS)) == ["e"]


def test_order_by_metric_missing_last_either_way() -> None:
    assert _ids(order_runs(RUNS, parse_order("metrics.auc"))) == ["d", "c", "a", "b", "e", "f"]
    assert _ids(order_runs(RUNS, parse_order("metrics.auc desc"))) == ["e", "b", "a", "c", "d", "f"]
    # Default: newest first.
    assert _ids(order_runs(RUNS, ())) == ["f", "e", "d", "c", "b", "a"]
    # Params order numerically: 1e-4 < 0.001 < 0.005 < 0.1, then text, then missing.
    assert _ids(order_runs(RUNS, parse_order("params.lr"))) == ["d", "a", "c", "b", "f", "e"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("metrics.auc>high", "where: metrics.auc compares numbers, got 'high'"),
        ("bogus.x=1", "where: unknown field 'bogus.x'"),
        ("metrics.auc>", "where: incomplete clause"),
        ("metrics.auc>0.9 nand params.lr<1", "where: expected 'and' or 'or' after a clause"),
        ("metrics.auc>0.9 ; drop", "where: unexpected character ';'"),
    ],
)
def test_bad_filters_are_named(where: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_where(where)
    assert message in caught.value.message


def test_bad_order_is_named() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_order("metrics.auc sideways")
    assert "order_by: expected FIELD [asc|desc]" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        parse_order("runtime")
    assert "order_by: unknown field 'runtime'" in caught.value.message
