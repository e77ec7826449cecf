"""A small, safe filter language over versions: parsed, never evaluated as code.

Grammar (``and`` binds tighter than ``or``; no parentheses)::

    expr    := conj ("or" conj)*
    conj    := clause ("and" clause)*
    clause  := field op value
    field   := metrics.<key> | params.<key> | tags.<key> | status | version
    op      := = | == | != | > | >= | < | <=
    value   := number | bare word | 'quoted' | "quoted"

``metrics.*`` and ``version`` compare as numbers; ``params.*``, ``tags.*`` and
``status`` as text (only ``=``/``!=``, or ordering by text when asked). A
clause on a key a version lacks is false. Example:
``metrics.auc>0.9 and tags.team=risk``. The syntax is shared with run search
(``domain/filter_syntax.py``); the fields and comparisons are these.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.filter_syntax import OPS, parse_expression
from modelplane.domain.models import ModelVersion

_FIELD = re.compile(r"(metrics|params|tags)\.([A-Za-z0-9_.:/-]{1,128})|status|version")


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str | float

    def matches(self, version: ModelVersion) -> bool:
        actual = _lookup(version, self.field)
        if actual is None:
            return False
        compare = OPS[self.op]
        return bool(compare(actual, self.value))

    def compiled(self) -> Callable[[ModelVersion], bool]:
        """The same test as ``matches`` without re-dispatching on the field per call."""
        compare, value = OPS[self.op], self.value
        group, _, key = self.field.partition(".")
        if group == "metrics":
            def metric(v: ModelVersion) -> bool:
                actual = v.lineage.metrics.get(key)
                return actual is not None and bool(compare(actual, value))
            return metric
        if group in ("params", "tags"):
            def text(v: ModelVersion) -> bool:
                actual = getattr(v.lineage, group).get(key)
                return actual is not None and bool(compare(actual, value))
            return text
        return self.matches


@dataclass(frozen=True)
class Filter:
    # Disjunction of conjunctions.
    alternatives: tuple[tuple[Clause, ...], ...]

    def matches(self, version: ModelVersion) -> bool:
        return any(all(c.matches(version) for c in conj) for conj in self.alternatives)

    def select(self, versions: list[ModelVersion]) -> list[ModelVersion]:
        """The matching versions, in order; the fast path for long lists."""
        selected = versions
        if len(self.alternatives) == 1:
            for clause in self.alternatives[0]:
                test = clause.compiled()
                selected = [v for v in selected if test(v)]
            return selected
        return [v for v in versions if self.matches(v)]


def _lookup(version: ModelVersion, field: str) -> str | float | None:
    if field == "version":
        return float(version.version)
    if field == "status":
        return version.status.value
    group, _, key = field.partition(".")
    if group == "metrics":
        return version.lineage.metrics.get(key)
    if group == "params":
        return version.lineage.params.get(key)
    return version.lineage.tags.get(key)


def parse_filter(text: str) -> Filter | None:
    """The parsed filter, or None for an empty expression; InvalidArgument naming the problem."""
    alternatives = parse_expression(
        text,
        fields=_FIELD,
        fields_expected="metrics.<key>, params.<key>, tags.<key>, status or version",
        example="e.g. metrics.auc>0.9 and tags.team=risk",
        clause=lambda field, op, value: Clause(field, op, _typed(field, op, value)),
    )
    return None if alternatives is None else Filter(alternatives)


def _typed(field: str, op: str, value: str) -> str | float:
    if field == "version" or field.startswith("metrics."):
        try:
            number = float(value)
        except ValueError:
            raise InvalidArgument(f"where: {field} compares numbers, got {value!r}") from None
        if math.isnan(number):
            raise InvalidArgument(f"where: {field} cannot compare with NaN")
        return number
    if field == "status":
        return value.upper()
    return value
