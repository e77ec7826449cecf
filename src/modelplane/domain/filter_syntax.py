"""The syntax of the filter language that versions and runs are searched with.

Grammar (``and`` binds tighter than ``or``; no parentheses)::

    expr    := conj ("or" conj)*
    conj    := clause ("and" clause)*
    clause  := field op value
    op      := = | == | != | > | >= | < | <=
    value   := number | bare word | 'quoted' | "quoted"

Parsed, never evaluated as code. Which fields exist and how a clause compares
belong to each search (``registry/filters.py``, ``experiments/query.py``); this
module only turns the text into clauses, or refuses it naming the problem.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any, TypeVar

from modelplane.domain.errors import InvalidArgument

MAX_EXPRESSION = 1024
MAX_CLAUSES = 32

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>==|!=|>=|<=|=|>|<)
    | (?P<quoted>'[^']*'|"[^"]*")
    | (?P<word>[A-Za-z0-9_.:@/+-]+)
    )""",
    re.VERBOSE,
)

C = TypeVar("C")


def _tokens(text: str, example: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InvalidArgument(
                f"where: unexpected character {text[position:].lstrip()[:1]!r} at "
                f"position {position}; expected {example}"
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def parse_expression(
    text: str,
    *,
    fields: re.Pattern[str],
    fields_expected: str,
    example: str,
    clause: Callable[[str, str, str], C],
) -> tuple[tuple[C, ...], ...] | None:
    """The expression as alternatives of conjunctions; None when it is empty.

    ``fields`` must match a whole field name (``fields_expected`` describes them
    in the error); ``clause(field, op, value)`` builds one clause from the
    unquoted value, and may refuse it with InvalidArgument.
    """
    if not text.strip():
        return None
    if len(text) > MAX_EXPRESSION:
        raise InvalidArgument(f"where: expected at most {MAX_EXPRESSION} characters")
    tokens = _tokens(text, example)
    alternatives: list[tuple[C, ...]] = []
    conj: list[C] = []
    count = 0
    i = 0
    while True:
        if i + 3 > len(tokens):
            raise InvalidArgument(
                f"where: incomplete clause at the end of {text!r:.80}; expected FIELD OP VALUE"
            )
        (fkind, field), (okind, op), (vkind, raw) = tokens[i : i + 3]
        if fkind != "word" or not fields.fullmatch(field):
            raise InvalidArgument(f"where: unknown field {field!r}; expected {fields_expected}")
        if okind != "op":
            raise InvalidArgument(f"where: expected an operator after {field!r}, got {op!r}")
        if vkind not in ("word", "quoted"):
            raise InvalidArgument(f"where: expected a value after {field}{op}, got {raw!r}")
        conj.append(clause(field, op, raw[1:-1] if vkind == "quoted" else raw))
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
    return tuple(alternatives)
