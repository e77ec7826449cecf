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
lacking the field come last either way.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.experiments import Run

MAX_EXPRESSION = 1024
MAX_CLAUSES = 32

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>==|!=|>=|<=|=|>|<)
    | (?P<quoted>'[^']*'|"[^"]*")
    | (?P<word>[A-Za-z0-9_.:@/+-]+)
    )""",
    re.VERBOSE,
)
_FIELD = re.compile(r"(metrics|params|tags)\.([A-Za-z0-9_.:/-]{1,128})|status|experiment|name")
_EXAMPLE = "e.g. metrics.auc>0.9 and params.lr<0.01"

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


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
        compare = _OPS[self.op]
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


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InvalidArgument(
                f"where: unexpected character {text[position:].lstrip()[:1]!r} at "
                f"position {position}; expected {_EXAMPLE}"
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _field(field: str, flag: str) -> str:
    if not _FIELD.fullmatch(field):
        raise InvalidArgument(
            f"{flag}: unknown field {field!r}; expected metrics.<key>, params.<key>, "
            "tags.<key>, status, experiment or name"
        )
    return field


def parse_where(text: str) -> RunFilter | None:
    """The parsed filter, or None for an empty expression; InvalidArgument naming the problem."""
    if not text.strip():
        return None
    if len(text) > MAX_EXPRESSION:
        raise InvalidArgument(f"where: expected at most {MAX_EXPRESSION} characters")
    tokens = _tokens(text)
    alternatives: list[tuple[Clause, ...]] = []
    conj: list[Clause] = []
    i = 0
    while True:
        if i + 3 > len(tokens):
            raise InvalidArgument(
                f"where: incomplete clause at the end of {text!r:.80}; expected FIELD OP VALUE"
            )
        (fkind, field), (okind, op), (vkind, raw) = tokens[i : i + 3]
        if fkind != "word":
            raise InvalidArgument(f"where: expected a field, got {field!r}; {_EXAMPLE}")
        _field(field, "where")
        if okind != "op":
            raise InvalidArgument(f"where: expected an operator after {field!r}, got {op!r}")
        if vkind not in ("word", "quoted"):
            raise InvalidArgument(f"where: expected a value after {field}{op}, got {raw!r}")
        value = raw[1:-1] if vkind == "quoted" else raw
        clause = Clause(field, op, value, _number(value))
        clause.test()  # rejects a metric compared with text now, not per run
        conj.append(clause)
        if sum(len(c) for c in alternatives) + len(conj) > MAX_CLAUSES:
            raise InvalidArgument(f"where: expected at most {MAX_CLAUSES} clauses")
        i += 3
        if i == len(tokens):
            break
        kind, word = tokens[i]
        if kind != "word" or word.lower() not in ("and", "or"):
            raise InvalidArgument(f"where: expected 'and' or 'or' after a clause, got {word!r}")
        if word.lower() == "or":
            alternatives.append(tuple(conj))
            conj = []
        i += 1
    alternatives.append(tuple(conj))
    return RunFilter(tuple(alternatives))


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
