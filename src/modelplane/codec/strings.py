"""String tensors <-> length-prefixed bytes, the wire form of STRING / BYTES tensors.

Each element travels as a 4-byte little-endian length followed by that many
bytes, row-major, with nothing between elements: the Open Inference Protocol's
BYTES encoding, used for ``modelplane.v1`` STRING tensors too so one codec serves
both. In memory a string tensor is a numpy object array of ``str``, which is what
onnxruntime takes for ``tensor(string)`` inputs and gives back for outputs (it
would turn ``bytes`` objects into their ``repr``), so the bytes must be UTF-8.
"""

from __future__ import annotations

import struct

import numpy as np

from modelplane.domain.errors import InvalidArgument

_LENGTH = struct.Struct("<I")


def decode_strings(data: bytes, count: int, what: str) -> np.ndarray:
    """A flat object array of ``count`` strings read from ``data``.

    Raises InvalidArgument naming ``what`` (e.g. "input 'text'") when a length
    prefix is cut short, runs past the end, the element count differs from
    ``count`` or an element is not UTF-8.
    """
    view = memoryview(data)
    # Collected first, allocated once the count is proven: a shape claiming billions
    # of elements in a tiny request must not make the server reserve gigabytes.
    items: list[str] = []
    offset, size, index = 0, len(view), 0
    while offset < size:
        if offset + 4 > size:
            raise InvalidArgument(
                f"{what}: BYTES element {index} has a truncated 4-byte length prefix "
                f"at byte {offset} of {size}"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > size:
            raise InvalidArgument(
                f"{what}: BYTES element {index} declares {length} bytes but only "
                f"{size - offset} remain"
            )
        if index >= count:
            raise InvalidArgument(
                f"{what}: BYTES data holds more than the {count} elements the shape needs"
            )
        try:
            items.append(str(view[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise InvalidArgument(
                f"{what}: BYTES element {index} is not UTF-8 text, which string models take"
            ) from None
        offset += length
        index += 1
    if index != count:
        raise InvalidArgument(f"{what}: BYTES data holds {index} elements, the shape needs {count}")
    out = np.empty(count, dtype=object)
    out[:] = items
    return out


def strings_from_list(items: list[bytes], what: str) -> np.ndarray:
    """A flat object array of ``str`` from separate byte strings (typed contents)."""
    out = np.empty(len(items), dtype=object)
    for index, item in enumerate(items):
        try:
            out[index] = item.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(
                f"{what}: BYTES element {index} is not UTF-8 text, which string models take"
            ) from None
    return out


def element_bytes(value: object) -> bytes:
    """One element's bytes: UTF-8 for ``str`` (what onnxruntime returns), as is for bytes."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def encode_strings(array: np.ndarray) -> bytes:
    """The length-prefixed bytes of every element of ``array``, row-major."""
    parts: list[bytes] = []
    pack = _LENGTH.pack
    for value in array.reshape(-1):
        data = element_bytes(value)
        parts.append(pack(len(data)))
        parts.append(data)
    return b"".join(parts)
