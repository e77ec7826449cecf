"""Protobuf wire primitives for answers the replicas write as bytes themselves.

Only what hot answers need: varints, length-delimited fields, and the rule that
proto3 leaves a field at its default off the wire. See codec/oip_wire.py and
codec/inference_wire.py for why answers are written this way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

_Key = TypeVar("_Key", bound=tuple[Any, ...])

_SMALL = [bytes((n,)) for n in range(0x80)]

# Past this many distinct entries an encoder's cache starts again: a replica
# answers for a handful of versions and output shapes, so this bounds memory.
CACHE_LIMIT = 4096


class EncodedParts(dict[_Key, bytes]):
    """Encoded message parts by the values they encode, built on first use.

    ``parts[key]`` is a plain dict lookup on a hit (nothing added to the predict
    path); a miss calls ``build(*key)``. Past ``limit`` entries it starts again.
    """

    def __init__(self, build: Callable[..., bytes], limit: int = CACHE_LIMIT) -> None:
        super().__init__()
        self._build = build
        self._limit = limit

    def __missing__(self, key: _Key) -> bytes:
        if len(self) >= self._limit:
            self.clear()
        encoded = self[key] = self._build(*key)
        return encoded


def tag(field_number: int, wire_type: int) -> bytes:
    return varint((field_number << 3) | wire_type)


LEN = 2  # length-delimited: strings, bytes, messages, packed repeated scalars
VARINT = 0


def varint(value: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(field_tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return field_tag + varint(len(payload)) + payload


def text(field_tag: bytes, value: str) -> bytes:
    """A string field; the empty string (its default) is left off."""
    return field(field_tag, value.encode()) if value else b""


def packed(field_tag: bytes, values: tuple[int, ...]) -> bytes:
    """A packed repeated field of non-negative integers; empty is left off."""
    if not values:
        return b""
    return field(field_tag, b"".join(varint(v) for v in values))
