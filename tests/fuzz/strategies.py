"""Hypothesis strategies built from protobuf descriptors: any request message of
any service, with the values that break decoders (huge and negative dims, NaN and
Inf, empty and odd-length bytes, unknown enum values, several oneof members)."""

from __future__ import annotations

import struct
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MAX_DEPTH = 3

EDGE_INTS = [0, 1, -1, 2, 16, 2**31 - 1, 2**31, 2**32, 2**40, 2**62, -(2**62), 2**63 - 1]
EDGE_FLOATS = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e308, -1e-308]

_INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _floats_as_bytes() -> st.SearchStrategy[bytes]:
    """Packed float32/float64 values, NaN and Inf included: what tensor payloads hold."""
    edges32 = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 3.4e38, -1e-38]
    singles = st.lists(st.sampled_from(edges32) | st.floats(width=32), max_size=16)
    doubles = st.lists(st.sampled_from(EDGE_FLOATS) | st.floats(), max_size=16)
    return st.one_of(
        singles.map(lambda xs: struct.pack(f"<{len(xs)}f", *xs)),
        doubles.map(lambda xs: struct.pack(f"<{len(xs)}d", *xs)),
    )


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_BOUNDS:
        low, high = _INT_BOUNDS[kind]
        edges = [v for v in EDGE_INTS if low <= v <= high]
        return st.sampled_from(edges) | st.integers(low, high) | st.integers(-2, 64).filter(
            lambda v: low <= v <= high
        )
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        width = 32 if kind == FieldDescriptor.TYPE_FLOAT else 64
        return st.sampled_from(EDGE_FLOATS) | st.floats(width=width)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return st.sampled_from(["", "x", "y", "m", "fraud", "../../etc/passwd", "a" * 300]) | (
            st.text(max_size=24)
        )
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=96) | _floats_as_bytes()
    if kind == FieldDescriptor.TYPE_ENUM:
        # Proto3 enums are open: unknown numbers arrive as they are.
        known = [v.number for v in field.enum_type.values]
        return st.sampled_from(known) | st.integers(-3, 40)
    raise AssertionError(f"unhandled field type {kind} of {field.full_name}")


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    cls = GetMessageClass(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                entry = field.message_type.fields_by_name
                key, value = entry["key"], entry["value"]
                if value.type == FieldDescriptor.TYPE_MESSAGE:
                    continue
                element: st.SearchStrategy[Any] = st.dictionaries(
                    _scalar(key), _scalar(value), max_size=3
                )
                fields[field.name] = st.none() | element
                continue
            if depth >= MAX_DEPTH or field.message_type.full_name.startswith("google.protobuf"):
                continue
            element = st.deferred(
                lambda f=field: message_strategy(f.message_type, depth + 1)  # type: ignore[misc]
            )
        else:
            element = _scalar(field)
        if field.is_repeated:
            fields[field.name] = st.none() | st.lists(element, max_size=4)
        else:
            fields[field.name] = st.none() | element

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name, strategy in fields.items():
            value = draw(strategy)
            if value is None:
                continue
            field = descriptor.fields_by_name[name]
            try:
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    getattr(message, name).update(value)
                elif field.is_repeated:
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        getattr(message, name).extend(value)
                    else:
                        getattr(message, name).extend(value)
                elif field.type == FieldDescriptor.TYPE_MESSAGE:
                    getattr(message, name).CopyFrom(value)
                else:
                    setattr(message, name, value)
            except (ValueError, TypeError):
                continue  # e.g. a surrogate in a string: not a message a client can send
        return message

    return build()


def consistent_tensor(cls: type[Message]) -> st.SearchStrategy[Message]:
    """A ``modelplane.v1.Tensor`` whose bytes may well match its shape (reaching deeper code)."""

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        dims = draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 16, 2**31, 2**62, -1]), max_size=3))
        dtype = draw(st.integers(0, 14))
        itemsize = draw(st.sampled_from([1, 2, 4, 8]))
        count = 1
        for d in dims:
            count *= max(d, 0)
        size = count * itemsize if count * itemsize < 4096 else draw(st.integers(0, 64))
        data = draw(st.binary(min_size=size, max_size=size))
        return cls(name=draw(st.sampled_from(["x", "", "y"])), dtype=dtype, shape=dims, data=data)

    return build()
