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
``metrics.auc>0.9 and tags.team=risk``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelplane.domain.errors import InvalidArgument
from modelplane.domain.models import ModelVersion

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
_FIELD = re.compile(r"(metrics|params|tags)\.([A-Za-z0-9_.:/-]{1,128})|status|version")

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str | float

    def matches(self, version: ModelVersion) -> bool:
        actual = _lookup(version, self.field)
        if actual is None:
            return False
        compare = _OPS[self.op]
        return bool(compare(actual, self.value))

    def compiled(self) -> Callable[[ModelVersion], bool]:
        """The same test as ``matches`` without re-dispatching on the field per call."""
        compare, value = _OPS[self.op], self.value
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


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InvalidArgument(
                f"where: unexpected character {text[position:].lstrip()[:1]!r} at "
                f"position {position}; expected e.g. metrics.auc>0.9 and tags.team=risk"
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_filter(text: str) -> Filter | None:
    """The parsed filter, or None for an empty expression; InvalidArgument naming the problem."""
    if not text.strip():
        return None
    if len(text) > MAX_EXPRESSION:
        raise InvalidArgument(f"where: expected at most {MAX_EXPRESSION} characters")
    tokens = _tokens(text)
    alternatives: list[tuple[Clause, ...]] = []
    conj: list[Clause] = []
    count = 0
    i = 0
    while True:
        if i + 3 > len(tokens):
            raise InvalidArgument(
                f"where: incomplete clause at the end of {text!r:.80}; expected FIELD OP VALUE"
            )
        (fkind, field), (okind, op), (vkind, raw) = tokens[i : i + 3]
        if fkind != "word" or not _FIELD.fullmatch(field):
            raise InvalidArgument(
                f"where: unknown field {field!r}; expected metrics.<key>, params.<key>, "
                "tags.<key>, status or version"
            )
        if okind != "op":
            raise InvalidArgument(f"where: expected an operator after {field!r}, got {op!r}")
        if vkind not in ("word", "quoted"):
            raise InvalidArgument(f"where: expected a value after {field}{op}, got {raw!r}")
        value = raw[1:-1] if vkind == "quoted" else raw
        conj.append(Clause(field, op, _typed(field, op, value)))
        count += 1
        if count > MAX_CLAUSES:
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
    return Filter(tuple(alternatives))


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
