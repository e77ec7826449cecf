"""Searching runs: a small filter language and an ordering, parsed, never evaluated as code.

Grammar (``and`` binds tighter than ``or``; no parentheses)::

    expr    := conj ("or" conj)*
    conj    := clause ("and" clause)*
    clause  := field op value
    field   := metrics.<key> | params.<key> | tags.<key> | status | experiment | name
    op      := = | == | != | > | >= | < | <=
    value   := number | bare word | 'quoted' | "quoted"

``metrics.*`` compare as numbers. ``params.*`` compare as numbers when both the
stored value and the operand read as numbers (``params.lr<0.01`` means what it
says, not a text comparison), as text otherwise. A clause on a key a run lacks
is false. Ordering: ``FIELD [asc|desc]`` (comma-separated for ties); runs
lacking the field come last either way. The syntax is shared with version
search (``domain/filter_syntax.py``); the fields and comparisons are these.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.experiments import Run
from modelplane.domain.filter_syntax import OPS, parse_expression

_FIELD = re.compile(r"(metrics|params|tags)\.([A-Za-z0-9_.:/-]{1,128})|status|experiment|name")
_FIELDS_EXPECTED = "metrics.<key>, params.<key>, tags.<key>, status, experiment or name"
_EXAMPLE = "e.g. metrics.auc>0.9 and params.lr<0.01"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def field_value(run: Run, field: str) -> str | float | None:
    """The run's value for a filter or ordering field; None when it lacks it."""
    if field == "status":
        return run.status.value
    if field == "experiment":
        return run.experiment
    if field == "name":
        return run.name
    group, _, key = field.partition(".")
    if group == "metrics":
        return run.metrics.get(key)
    if group == "params":
        return run.params.get(key)
    return run.tags.get(key)


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    text: str
    number: float | None

    def test(self) -> Callable[[Run], bool]:
        compare = OPS[self.op]
        group, _, key = self.field.partition(".")
        number, text = self.number, self.text
        if group == "metrics":
            if number is None:
                raise InvalidArgument(f"where: {self.field} compares numbers, got {text!r}")

            def metric(run: Run) -> bool:
                actual = run.metrics.get(key)
                return actual is not None and bool(compare(actual, number))

            return metric
        if group == "params":

            def param(run: Run) -> bool:
                actual = run.params.get(key)
                if actual is None:
                    return False
                if number is not None:
                    as_number = _number(actual)
                    if as_number is not None:
                        return bool(compare(as_number, number))
                return bool(compare(actual, text))

            return param
        wanted = text.upper() if self.field == "status" else text

        def other(run: Run) -> bool:
            actual = field_value(run, self.field)
            return actual is not None and bool(compare(actual, wanted))

        return other


@dataclass(frozen=True)
class RunFilter:
    alternatives: tuple[tuple[Clause, ...], ...]

    def select(self, runs: list[Run]) -> list[Run]:
        tests = [[clause.test() for clause in conj] for conj in self.alternatives]
        if len(tests) == 1:
            # One conjunction: narrow the list clause by clause (the common case).
            selected = runs
            for test in tests[0]:
                selected = [run for run in selected if test(run)]
            return selected
        return [run for run in runs if any(all(t(run) for t in conj) for conj in tests)]


def _field(field: str, flag: str) -> str:
    if not _FIELD.fullmatch(field):
        raise InvalidArgument(f"{flag}: unknown field {field!r}; expected {_FIELDS_EXPECTED}")
    return field


def _clause(field: str, op: str, value: str) -> Clause:
    clause = Clause(field, op, value, _number(value))
    clause.test()  # rejects a metric compared with text now, not per run
    return clause


def parse_where(text: str) -> RunFilter | None:
    """The parsed filter, or None for an empty expression; InvalidArgument naming the problem."""
    alternatives = parse_expression(
        text, fields=_FIELD, fields_expected=_FIELDS_EXPECTED, example=_EXAMPLE, clause=_clause
    )
    return None if alternatives is None else RunFilter(alternatives)


@dataclass(frozen=True)
class OrderKey:
    field: str
    descending: bool


def parse_order(text: str) -> tuple[OrderKey, ...]:
    """``metrics.auc desc, params.lr``; empty means newest first."""
    keys: list[OrderKey] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        words = part.split()
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise InvalidArgument(
                f"order_by: expected FIELD [asc|desc], got {part!r:.80}; e.g. metrics.auc desc"
            )
        keys.append(OrderKey(_field(words[0], "order_by"), len(words) == 2 and
                             words[1].lower() == "desc"))
    return tuple(keys)


def _sort_value(run: Run, field: str) -> tuple[int, float, str]:
    value = field_value(run, field)
    if value is None:
        return (1, 0.0, "")
    if isinstance(value, float):
        return (0, value, "")
    number = _number(value) if field.startswith("params.") else None
    # Numbers before text, so a mixed param column reads 0.001, 0.1, adam.
    return (0, number, "") if number is not None else (1, 0.0, value)


def _sorter(field: str) -> Callable[[Run], tuple[int, float, str]]:
    return lambda run: _sort_value(run, field)


def order_runs(runs: list[Run], keys: tuple[OrderKey, ...]) -> list[Run]:
    ordered = sorted(runs, key=lambda r: (-r.start_ms, r.run_id))
    # Stable sorts from the least to the most significant key.
    for key in reversed(keys):
        present = [r for r in ordered if field_value(r, key.field) is not None]
        missing = [r for r in ordered if field_value(r, key.field) is None]
        present.sort(key=_sorter(key.field), reverse=key.descending)
        ordered = present + missing
    return ordered
