"""Drift and feedback state as it is persisted: taken, encoded, decoded, restored."""

from __future__ import annotations

import math

import pytest

from modelplane.telemetry.drift import (
    BIN_COUNT,
    DRIFT_SLOT_SECONDS,
    MAX_FEATURES_PER_VERSION,
    BaselineState,
    DriftSlotState,
    DriftTracker,
)
from modelplane.telemetry.feedback import (
    INDEX,
    VALUE,
    FeedbackJoiner,
    PredictionRecord,
    QualitySlotState,
)
from modelplane.telemetry.quality_codec import (
    decode_baseline,
    decode_drift_slot,
    decode_quality_slot,
    decode_series,
    encode_baseline,
    encode_drift_slot,
    encode_quality_slot,
    encode_series,
    encode_slot_field,
)

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _counts(**bins: int) -> list[int]:
    counts = [0] * BIN_COUNT
    for name, n in bins.items():
        counts[int(name[1:])] = n
    return counts


def test_baseline_and_slot_round_trip_sparse() -> None:
    baseline = BaselineState("fraud", "m", 3, "input:x[0]", tuple(_counts(b3=15, b40=5)))
    text = encode_baseline(baseline)
    assert text == '{"n":20,"c":[[3,15],[40,5]]}'
    assert decode_baseline("fraud", "m", 3, "input:x[0]", text) == baseline
    slot = DriftSlotState("fraud", "m", 3, "output:y[0]", 180_000_000, tuple(_counts(b0=2)))
    field = encode_slot_field(slot.feature, slot.epoch)
    assert decode_drift_slot("fraud", "m", 3, field, encode_drift_slot(slot)) == slot
    assert decode_series(encode_series("", "m", 0)) == ("", "m", 0)


def test_feedback_second_round_trip() -> None:
    state = QualitySlotState("fraud", "m", 1, 1_800_000_000, 10, 7, 4, 1.25)
    text = encode_quality_slot(state)
    assert decode_quality_slot("fraud", "m", 1, "1800000000", text) == state


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"n":20,"c":[[3,15],[40,', "baseline: not JSON"),
        ('{"n":21,"c":[[3,15],[40,5]]}', "add up to 20, total says 21"),
        ('{"n":0,"c":[]}', "add up to 0, total says 0"),
        ('{"n":5,"c":[[99,5]]}', f"expected [bin < {BIN_COUNT}, count >= 0] pairs"),
        ('{"n":-5,"c":[[1,-5]]}', "expected {"),
        ('[1, 2]', "expected {"),
    ],
)
def test_malformed_baselines_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("{", r"\{")):
        decode_baseline("e", "m", 1, "f", text)


@pytest.mark.parametrize(
    ("second", "text", "message"),
    [
        ("1800000000", "[10,7,4,1.2", "not JSON"),
        ("1800000000", "[10,11,0,0]", "correct must be <= labelled"),
        ("1800000000", "[1,1,1,NaN]", "finite number"),
        ("1800000000", "[1,1,1,-1]", "finite number"),
        ("1800000000", "[1,true,1,0]", r"expected \[labelled"),
        ("1800000000", "[1,1,1]", r"expected \[labelled"),
        ("x18", "[1,1,1,0]", "expected epoch seconds"),
    ],
)
def test_malformed_feedback_seconds_are_refused(second: str, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_quality_slot("e", "m", 1, second, text)


def test_malformed_series_and_slot_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="series: not JSON"):
        decode_series('["fraud","m"')
    with pytest.raises(ValueError, match=r"expected \[endpoint, model, version\]"):
        decode_series('["fraud","m",-1]')
    with pytest.raises(ValueError, match=r"expected \[feature, epoch\]"):
        decode_drift_slot("e", "m", 1, '["f"]', "[[1,1]]")
    with pytest.raises(ValueError, match="drift slot: not JSON"):
        decode_drift_slot("e", "m", 1, '["f",1]', "[[1,")


def _feed(tracker: DriftTracker, feature: str, n_low: int, n_high: int, t: float) -> None:
    tracker.add("fraud", "m", 1, feature, _counts(b30=n_low, b40=n_high), t)


def test_drift_state_taken_and_restored_gives_the_same_scores() -> None:
    clock = Clock(T0)
    before = DriftTracker(baseline_count=100, window_s=300, min_recent=10, clock=clock)
    captured: list[int] = []
    before.on_baseline_captured(lambda: captured.append(1))
    _feed(before, "input:x[0]", 60, 0, T0 - 200)
    assert captured == []  # 60 of 100: still filling
    _feed(before, "input:x[0]", 40, 0, T0 - 190)
    assert captured == [1]  # filled: the flush loop is woken once
    _feed(before, "input:x[0]", 10, 30, T0 - 100)
    _feed(before, "input:x[0]", 5, 25, T0 - 5)
    _feed(before, "input:x[1]", 50, 30, T0 - 5)  # a feature still filling its baseline
    baselines, slots = before.take_dirty()
    assert sorted((b.feature, b.count) for b in baselines) == [("input:x[0]", 100),
                                                                 ("input:x[1]", 80)]
    assert sorted(s.epoch * DRIFT_SLOT_SECONDS for s in slots) == [T0 - 100, T0 - 10]
    assert before.take_dirty() == ([], [])  # taken: nothing dirty until the next add

    after = DriftTracker(baseline_count=100, window_s=300, min_recent=10, clock=clock)
    assert after.restore(baselines, slots) == 4
    assert after.scores() == before.scores()
    score = after.scores()[("fraud", "m", 1)]
    assert score.psi > 0.25 and (score.baseline_count, score.recent_count) == (100, 70)

    # A write that failed is handed back: the next take returns it again.
    before.mark_dirty(baselines[:1], slots[:1])
    assert before.take_dirty() == (baselines[:1], slots[:1])


def test_restore_skips_slots_older_than_the_window_and_partial_baselines_keep_filling() -> None:
    clock = Clock(T0)
    tracker = DriftTracker(baseline_count=100, window_s=60, min_recent=1, clock=clock)
    partial = BaselineState("fraud", "m", 1, "f", tuple(_counts(b30=40)))
    old = DriftSlotState("fraud", "m", 1, "f", int((T0 - 120) // 10), tuple(_counts(b30=5)))
    assert tracker.restore([partial], [old]) == 1
    _feed(tracker, "f", 80, 0, T0)  # 60 complete the baseline, 20 are recent
    score = tracker.scores()[("fraud", "m", 1)]
    assert (score.baseline_count, score.recent_count) == (100, 20)


def test_forget_drops_every_endpoint_of_a_version_and_features_are_capped() -> None:
    tracker = DriftTracker(baseline_count=10, window_s=60, min_recent=1, clock=Clock(T0))
    tracker.add("a", "m", 1, "f", _counts(b1=5), T0)
    tracker.add("b", "m", 1, "f", _counts(b1=5), T0)
    tracker.add("a", "m", 2, "f", _counts(b1=5), T0)
    assert tracker.forget("m", 1) == [("a", "m", 1), ("b", "m", 1)]
    assert tracker.versions() == [("a", "m", 2)]
    assert [b.version for b in tracker.take_dirty()[0]] == [2]
    for i in range(MAX_FEATURES_PER_VERSION - 1):
        tracker.add("a", "m", 2, f"g{i}", _counts(b1=1), T0)
    with pytest.raises(ValueError, match=f"already tracks {MAX_FEATURES_PER_VERSION} features"):
        tracker.add("a", "m", 2, "one-too-many", _counts(b1=1), T0)


class _Records:
    """The prediction store's one read, over a dict (the joiner's logic is under test)."""

    def __init__(self, records: list[PredictionRecord]) -> None:
        self._records = {r.prediction_id: r for r in records}

    def get(self, prediction_id: str) -> PredictionRecord | None:
        return self._records.get(prediction_id)


def test_feedback_sums_taken_and_restored_give_the_same_quality() -> None:
    clock = Clock(T0)
    records = [PredictionRecord(f"c{i}", "fraud", "m", 1, INDEX, (1,), T0 - 100 - i)
               for i in range(10)]
    records += [PredictionRecord(f"v{i}", "fraud", "m", 2, VALUE, (2.0,), T0 - 30)
                for i in range(4)]
    before = FeedbackJoiner(_Records(records), clock=clock)
    for i in range(10):
        before.feedback(f"c{i}", 1 if i < 7 else 0)
    for i in range(4):
        before.feedback(f"v{i}", 2.0 + i * 0.5)
    states = before.take_dirty()
    assert len(states) == 10 + 1  # one second per class prediction, one for the values
    assert before.take_dirty() == []

    after = FeedbackJoiner(_Records([]), clock=clock)
    assert after.restore(states) == len(states)
    for window in (60, 300, 3600):
        assert after.quality(T0 - window, T0) == before.quality(T0 - window, T0)
    count, accuracy, mae = after.quality(T0 - 300, T0)[("fraud", "m", 1)]
    assert (count, accuracy, mae) == (10, pytest.approx(0.7), None)
    count, accuracy, mae = after.quality(T0 - 300, T0)[("fraud", "m", 2)]
    assert (count, accuracy) == (4, None) and mae == pytest.approx(0.75)
    assert after.accuracy("fraud", "m", 1, T0 - 105, T0) == pytest.approx(6 / 6)
    # Seconds past the horizon are not restored; the window reads them nowhere anyway.
    clock.now = T0 + 4000
    assert FeedbackJoiner(_Records([]), clock=clock).restore(states) == 0
    assert math.isclose(sum(s.abs_error for s in states), 3.0)
