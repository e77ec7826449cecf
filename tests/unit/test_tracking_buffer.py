"""The tracking client's point buffer and the LogBatch requests it writes by hand."""

from __future__ import annotations

import threading
from array import array

import numpy as np

from modelplane.codec.wire import LEN, field, tag
from modelplane.tracking import _PointBuffer, _requests, _varints
from modelplane.v1 import experiments_pb2

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def test_requests_are_byte_for_byte_what_protobuf_writes() -> None:
    steps = [0, 1, 127, 128, 300, 16_383, 16_384, 2**35, INT64_MAX, -1, INT64_MIN, 7]
    values = [0.0, -0.0, 1.5, -2.25, 1e308, 5e-324, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    stamps_ns = [1_700_000_000_123_456_789 + i * 999_999 for i in range(len(steps))]
    taken = [
        ("auc", (array("q", steps[:2]), array("d", values[:2]), array("q", stamps_ns[:2]))),
        ("loss", (array("q", steps), array("d", values), array("q", stamps_ns))),
    ]
    sent = list(_requests("run-1", taken, per_call=5))

    expected_series = [
        ("auc", 0, 2),
        ("loss", 0, 3),
        ("loss", 3, 8),
        ("loss", 8, 12),
    ]
    expected_requests = [
        [expected_series[0], expected_series[1]],
        [expected_series[2]],
        [expected_series[3]],
    ]
    assert [points for _, points in sent] == [5, 5, 4]
    for (body, _), wanted in zip(sent, expected_requests, strict=True):
        series = []
        for key, start, end in wanted:
            source = taken[0][1] if key == "auc" else taken[1][1]
            series.append(
                experiments_pb2.MetricSeries(
                    key=key,
                    steps=source[0][start:end],
                    values=source[1][start:end],
                    timestamps_ms=[ns // 1_000_000 for ns in source[2][start:end]],
                )
            )
        request = experiments_pb2.LogBatchRequest(run_id="run-1", metrics=series)
        assert body == request.SerializeToString()


def test_a_single_point_and_an_empty_take_encode_like_protobuf() -> None:
    taken = [("m", (array("q", [5]), array("d", [0.5]), array("q", [2_000_000])))]
    [(body, points)] = list(_requests("r", taken, per_call=100))
    assert points == 1
    expected = experiments_pb2.LogBatchRequest(
        run_id="r",
        metrics=[experiments_pb2.MetricSeries(key="m", steps=[5], values=[0.5], timestamps_ms=[2])],
    )
    assert body == expected.SerializeToString()
    assert list(_requests("r", [], per_call=100)) == []


def test_points_logged_while_the_sender_takes_are_never_lost_or_split() -> None:
    buffer = _PointBuffer(limit=10_000_000)
    per_thread = 40_000
    taken: list[tuple[str, int, float, int]] = []
    logging_done = threading.Event()

    def log(thread: int) -> None:
        for i in range(per_thread):
            step = thread * 1_000_000 + i
            # The value and timestamp are functions of the step: a point whose
            # columns came apart would not match.
            buffer.add("loss", step * 0.5, step, step * 3)

    def send() -> None:
        while True:
            done = logging_done.is_set()
            for key, (steps, values, stamps) in buffer.take():
                taken.extend(zip([key] * len(steps), steps, values, stamps, strict=True))
            if done:
                return

    sender = threading.Thread(target=send)
    sender.start()
    loggers = [threading.Thread(target=log, args=(n,)) for n in range(3)]
    for thread in loggers:
        thread.start()
    for thread in loggers:
        thread.join()
    logging_done.set()
    sender.join()

    assert len(taken) == 3 * per_thread
    assert all(value == step * 0.5 and stamp == step * 3 for _, step, value, stamp in taken)
    steps = [step for _, step, _, _ in taken]
    assert sorted(steps) == sorted(n * 1_000_000 + i for n in range(3) for i in range(per_thread))
    for n in range(3):  # each thread's points keep their order
        mine = [step for step in steps if step // 1_000_000 == n]
        assert mine == sorted(mine)
    assert len(buffer) == 0


def test_past_the_limit_new_points_are_dropped_and_counted() -> None:
    one_metric = _PointBuffer(limit=10)
    for i in range(15):
        one_metric.add("loss", 1.0, i, i)
    assert (len(one_metric), one_metric.dropped) == (10, 5)

    buffer = _PointBuffer(limit=10)
    for i in range(8):
        buffer.add("loss", 1.0, i, i)
    for i in range(7):  # its share is 5; past it only while the total is under 10
        buffer.add("auc", 0.5, i, i)
    for i in range(8, 10):
        buffer.add("loss", 1.0, i, i)
    assert len(buffer) == 13
    assert buffer.dropped == 4
    pending = {key: list(points[0]) for key, points in buffer.take()}
    assert pending == {"auc": [0, 1, 2, 3, 4], "loss": list(range(8))}
    buffer.add("auc", 0.5, 9, 9)
    assert len(buffer) == 1
    assert buffer.dropped == 4


def test_a_step_that_is_not_an_int64_leaves_nothing_behind() -> None:
    buffer = _PointBuffer(limit=10)
    buffer.add("loss", 1.0, 1, 1)
    for bad in (2**63, 1.5):
        try:
            buffer.add("loss", 2.0, bad, 2)  # type: ignore[arg-type]
        except (OverflowError, TypeError):
            pass
        else:
            raise AssertionError(f"step {bad!r} was accepted")
    buffer.add("loss", 3.0, 3, 3)
    [(_, (steps, values, stamps))] = buffer.take()
    assert (list(steps), list(values), list(stamps)) == ([1, 3], [1.0, 3.0], [1, 3])


def test_columns_of_mixed_and_equal_widths_encode_like_protobuf() -> None:
    rng = np.random.default_rng(5)
    columns = [
        rng.integers(0, 2**40, 500) >> rng.integers(0, 40, 500),  # every width up to six
        np.full(64, 1_700_000_000_123, dtype=np.int64),  # one width, like timestamps
        rng.integers(INT64_MIN, INT64_MAX, 200, dtype=np.int64, endpoint=True),
    ]
    for numbers in columns:
        numbers = numbers.astype(np.int64)
        expected = experiments_pb2.MetricSeries(steps=numbers.tolist()).SerializeToString()
        assert field(tag(2, LEN), _varints(numbers)) == expected  # steps is field 2, packed
