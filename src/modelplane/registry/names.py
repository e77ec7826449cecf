"""Rules for the names users pick: models, aliases and endpoints.

Names become parts of Redis keys and file-free identifiers, so they are limited
to a safe alphabet; an alias must not look like a version number, or a
reference such as ``fraud:3`` would be ambiguous.
"""

from __future__ import annotations

import re

from modelplane.domain.errors import InvalidArgument

_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def validate_name(field: str, value: str) -> str:
    """Returns ``value`` when it is 1-128 characters of ``[A-Za-z0-9._-]``."""
    if not _NAME.fullmatch(value):
        raise InvalidArgument(
            f"{field}: expected 1-128 characters of [A-Za-z0-9._-], got {value!r:.140}"
        )
    return value


def validate_alias(field: str, value: str) -> str:
    validate_name(field, value)
    if value.isdigit():
        raise InvalidArgument(f"{field}: an alias must not be all digits, got {value!r}")
    return value


def validate_version_number(field: str, value: int) -> int:
    if value < 1:
        raise InvalidArgument(f"{field}: expected a version number >= 1, got {value}")
    return value
