"""Metric points packed as binary batches: one Redis list element per logged batch.

A batch is ``n`` (uint32) followed by ``n`` int64 steps, ``n`` float64 values and
``n`` int64 timestamps (ms), little-endian. Appending a batch is one RPUSH, and
reading a series of 100,000 points is one LRANGE and a few array copies.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence

from modelplane.domain.errors import DataLoss
from modelplane.domain.experiments import MetricSeries

_HEADER = struct.Struct("<I")
_SWAP = sys.byteorder != "little"


def _bytes(values: array[int] | array[float]) -> bytes:
    if _SWAP:
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def pack(steps: Sequence[int], values: Sequence[float], timestamps_ms: Sequence[int]) -> bytes:
    return b"".join(
        (
            _HEADER.pack(len(steps)),
            _bytes(array("q", steps)),
            _bytes(array("d", values)),
            _bytes(array("q", timestamps_ms)),
        )
    )


def _read(typecode: str, blob: bytes, start: int, count: int) -> array[int] | array[float]:
    out: array[int] | array[float] = array(typecode)
    out.frombytes(blob[start : start + 8 * count])
    if _SWAP:
        out.byteswap()
    return out


def unpack(key: str, blobs: Sequence[bytes]) -> MetricSeries:
    steps: list[int] = []
    values: list[float] = []
    stamps: list[int] = []
    for blob in blobs:
        (count,) = _HEADER.unpack_from(blob)
        if len(blob) != _HEADER.size + 24 * count:
            raise DataLoss(f"metric '{key}': a stored batch is truncated")
        offset = _HEADER.size
        steps.extend(_read("q", blob, offset, count))  # type: ignore[arg-type]
        values.extend(_read("d", blob, offset + 8 * count, count))
        stamps.extend(_read("q", blob, offset + 16 * count, count))  # type: ignore[arg-type]
    return MetricSeries(
        key=key, steps=tuple(steps), values=tuple(values), timestamps_ms=tuple(stamps)
    )
