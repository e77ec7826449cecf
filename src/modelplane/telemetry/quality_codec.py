"""Text forms of the drift and feedback state kept in Redis, checked on the way back.

Drift counts are sparse (most of the bins of a feature are empty): a list of
``[bin, count]`` pairs for the non-empty bins. A baseline also carries its total,
so a value cut short or edited by hand is refused rather than loaded as a
smaller baseline. A feedback second is ``[labelled, correct, numeric, abs_error]``.

Every ``decode_*`` raises ValueError on anything malformed (truncated JSON, wrong
shape, negative or inconsistent counts); the caller skips that entry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from modelplane.telemetry.drift import BIN_COUNT, BaselineState, DriftSlotState
from modelplane.telemetry.feedback import QualitySlotState

VersionKey = tuple[str, str, int]


def encode_series(endpoint: str, model: str, version: int) -> str:
    return json.dumps([endpoint, model, version], separators=(",", ":"))


def decode_series(text: str) -> VersionKey:
    data = _loads(text, "series")
    if (
        not isinstance(data, list)
        or len(data) != 3
        or not isinstance(data[0], str)
        or not isinstance(data[1], str)
        or not _is_count(data[2])
    ):
        raise ValueError(f"series: expected [endpoint, model, version], got {text[:80]!r}")
    return data[0], data[1], int(data[2])


def encode_slot_field(feature: str, epoch: int) -> str:
    return json.dumps([feature, epoch], separators=(",", ":"))


def decode_slot_field(text: str) -> tuple[str, int]:
    data = _loads(text, "drift slot field")
    if (
        not isinstance(data, list)
        or len(data) != 2
        or not isinstance(data[0], str)
        or not _is_count(data[1])
    ):
        raise ValueError(f"drift slot field: expected [feature, epoch], got {text[:80]!r}")
    return data[0], int(data[1])


def _sparse(counts: Sequence[int]) -> list[list[int]]:
    return [[i, n] for i, n in enumerate(counts) if n]


def _dense(data: Any, what: str) -> tuple[int, ...]:
    if not isinstance(data, list):
        raise ValueError(f"{what}: expected a list of [bin, count] pairs")
    counts = [0] * BIN_COUNT
    try:
        for i, n in data:
            # ``type(...) is int`` also refuses booleans; restore reads thousands of these.
            if type(i) is not int or type(n) is not int or not 0 <= i < BIN_COUNT or n < 0:
                raise ValueError
            counts[i] += n
    except (TypeError, ValueError):
        raise ValueError(
            f"{what}: expected [bin < {BIN_COUNT}, count >= 0] pairs, got {data!r:.60}"
        ) from None
    return tuple(counts)


def encode_baseline(state: BaselineState) -> str:
    return json.dumps({"n": state.count, "c": _sparse(state.counts)}, separators=(",", ":"))


def decode_baseline(endpoint: str, model: str, version: int, feature: str,
                    text: str) -> BaselineState:
    data = _loads(text, "baseline")
    if not isinstance(data, dict) or not _is_count(data.get("n")):
        raise ValueError("baseline: expected {\"n\": total, \"c\": [[bin, count], ...]}")
    counts = _dense(data.get("c"), "baseline")
    if sum(counts) != data["n"] or data["n"] == 0:
        raise ValueError(f"baseline: counts add up to {sum(counts)}, total says {data['n']}")
    return BaselineState(endpoint, model, version, feature, counts)


def encode_drift_slot(state: DriftSlotState) -> str:
    return json.dumps(_sparse(state.counts), separators=(",", ":"))


def decode_drift_slot(endpoint: str, model: str, version: int, field: str,
                      text: str) -> DriftSlotState:
    feature, epoch = decode_slot_field(field)
    counts = _dense(_loads(text, "drift slot"), "drift slot")
    return DriftSlotState(endpoint, model, version, feature, epoch, counts)


def encode_quality_slot(state: QualitySlotState) -> str:
    return json.dumps(
        [state.labelled, state.correct, state.numeric, state.abs_error], separators=(",", ":")
    )


def decode_quality_slot(endpoint: str, model: str, version: int, second: str,
                        text: str) -> QualitySlotState:
    if not second.isdigit():
        raise ValueError(f"feedback second: expected epoch seconds, got {second[:40]!r}")
    data = _loads(text, "feedback second")
    if not isinstance(data, list) or len(data) != 4 or not all(_is_count(x) for x in data[:3]):
        raise ValueError("feedback second: expected [labelled, correct, numeric, abs_error]")
    labelled, correct, numeric, abs_error = data
    if (
        correct > labelled
        or isinstance(abs_error, bool)
        or not isinstance(abs_error, (int, float))
        or not math.isfinite(abs_error)
        or abs_error < 0
    ):
        raise ValueError(
            "feedback second: correct must be <= labelled and abs_error a finite number >= 0"
        )
    return QualitySlotState(
        endpoint, model, version, int(second), labelled, correct, numeric, float(abs_error)
    )


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{what}: not JSON ({error})") from None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
