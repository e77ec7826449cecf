"""Metric points packed as binary batches: one Redis list element per logged batch.

A batch is ``n`` (uint32) followed by ``n`` int64 steps, ``n`` float64 values and
``n`` int64 timestamps (ms), little-endian. Appending a batch is one RPUSH, and
reading a series of 100,000 points is one LRANGE and a few array copies.

Logged points are handled as numpy columns from the request to the stored bytes:
a training loop sends ~100,000 points in a few seconds and the control plane
often shares its machine, so no per-point Python object is made on the way in.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from modelplane.domain.errors import DataLoss
from modelplane.domain.experiments import MetricSeries

_HEADER = struct.Struct("<I")
_SWAP = sys.byteorder != "little"
_INT64 = np.dtype("<i8")
_FLOAT64 = np.dtype("<f8")


class SeriesLike(Protocol):
    """One metric's points as sequences: a domain MetricSeries or a decoded message.

    Repeated fields of a protobuf message qualify and convert to numpy with one
    copy in C (they implement ``__array__``).
    """

    @property
    def key(self) -> str: ...

    @property
    def steps(self) -> Sequence[int]: ...

    @property
    def values(self) -> Sequence[float]: ...

    @property
    def timestamps_ms(self) -> Sequence[int]: ...


@dataclass(frozen=True)
class Columns:
    """One metric's points as little-endian numpy columns, ready to validate and pack."""

    key: str
    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    timestamps_ms: npt.NDArray[np.int64]


def columns_of(points: SeriesLike) -> Columns:
    return Columns(
        key=points.key,
        steps=np.asarray(points.steps, dtype=_INT64),
        values=np.asarray(points.values, dtype=_FLOAT64),
        timestamps_ms=np.asarray(points.timestamps_ms, dtype=_INT64),
    )


def pack_columns(columns: Columns) -> bytes:
    return b"".join(
        (
            _HEADER.pack(len(columns.values)),
            columns.steps.tobytes(),
            columns.values.tobytes(),
            columns.timestamps_ms.tobytes(),
        )
    )


def pack(steps: Sequence[int], values: Sequence[float], timestamps_ms: Sequence[int]) -> bytes:
    return pack_columns(
        Columns(
            key="",
            steps=np.asarray(steps, dtype=_INT64),
            values=np.asarray(values, dtype=_FLOAT64),
            timestamps_ms=np.asarray(timestamps_ms, dtype=_INT64),
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
