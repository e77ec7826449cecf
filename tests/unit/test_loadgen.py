"""The pure parts of the load generator: schedules, histograms, coordinated omission."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

# loadtests/ lives beside src/, outside the installed package.
from hdrh.histogram import HdrHistogram

from loadtests.loadgen import (
    HIGHEST_US,
    LOWEST_US,
    LoadSpec,
    error_name,
    merge_histograms,
    new_histogram,
    poisson_schedule,
    record_seconds,
    run_closed_loop,
    run_open_loop,
    split,
    summarize,
)
from loadtests.predict_vs_bare import ratios


def _evenly(rate: float, start: float, count: int) -> Iterator[float]:
    return (start + i / rate for i in range(count))


class StallingServer:
    """One request at a time, 1 ms each, except one request that stalls."""

    def __init__(self, stall_at: int, stall_s: float) -> None:
        self.lock = asyncio.Lock()
        self.calls = 0
        self.stall_at = stall_at
        self.stall_s = stall_s

    async def send(self) -> None:
        async with self.lock:
            self.calls += 1
            await asyncio.sleep(self.stall_s if self.calls == self.stall_at else 0.001)


def test_poisson_schedule_has_the_requested_rate_and_stays_in_the_window() -> None:
    times = list(poisson_schedule(1000.0, 5.0, 15.0, random.Random(7)))
    assert 9_500 <= len(times) <= 10_500
    assert all(5.0 < t < 15.0 for t in times)
    assert times == sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Exponential gaps: mean 1 ms, and about a third longer than the mean (e^-1).
    assert abs(sum(gaps) / len(gaps) - 0.001) < 0.0001
    longer = sum(g > 0.001 for g in gaps) / len(gaps)
    assert 0.33 < longer < 0.41


def test_poisson_schedule_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate must be > 0, got 0"):
        next(poisson_schedule(0.0, 0.0, 1.0, random.Random(0)))


def test_merged_histogram_keeps_every_sample_of_every_process() -> None:
    fast, slow = new_histogram(), new_histogram()
    for _ in range(900):
        record_seconds(fast, 0.0001)  # 100 us
    for _ in range(100):
        record_seconds(slow, 0.010)  # 10 ms
    merged = merge_histograms([fast.encode(), slow.encode().decode("ascii")])
    assert merged.get_total_count() == 1000
    assert merged.values_are_equivalent(merged.get_value_at_percentile(50.0), 100)
    assert merged.values_are_equivalent(merged.get_value_at_percentile(95.0), 10_000)
    assert merged.values_are_equivalent(merged.get_max_value(), 10_000)


def test_record_seconds_clamps_into_the_histogram_range() -> None:
    h = new_histogram()
    record_seconds(h, 0.0)
    record_seconds(h, 10_000.0)
    assert h.get_total_count() == 2
    assert h.get_min_value() == LOWEST_US
    assert h.values_are_equivalent(h.get_max_value(), HIGHEST_US)


def test_open_loop_counts_a_stall_against_every_request_it_delayed() -> None:
    # 200 req/s, one outstanding at a time, one request stalls 300 ms: about 60 intended
    # sends fall inside the stall, and each must show the wait it suffered.
    server = StallingServer(stall_at=20, stall_s=0.3)

    async def scenario() -> tuple[int, int]:
        start = time.monotonic() + 0.05
        stats = await run_open_loop(
            server.send, _evenly(200.0, start, 200), start, max_outstanding=1
        )
        return stats.histogram.get_total_count(), _count_above(stats.histogram, 100_000)

    total, slow = asyncio.run(scenario())
    assert total == 200
    assert slow >= 25, f"only {slow} requests over 100 ms: the stall was not charged"


def test_closed_loop_sees_the_same_stall_only_once() -> None:
    # The contrast that makes the open loop necessary: measured from the actual send,
    # the stall hides in a single sample.
    server = StallingServer(stall_at=20, stall_s=0.3)

    async def scenario() -> tuple[int, int]:
        now = time.monotonic()
        stats = await run_closed_loop(server.send, 1, now, now + 0.6)
        return stats.histogram.get_total_count(), _count_above(stats.histogram, 100_000)

    total, slow = asyncio.run(scenario())
    assert total > 50
    assert slow == 1


def test_closed_loop_keeps_warm_up_out_and_counts_errors_by_status() -> None:
    calls = 0

    async def send() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.002)
        if calls % 5 == 0:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata(), "full"
            )

    async def scenario() -> tuple[int, Counter[str], int]:
        now = time.monotonic()
        stats = await run_closed_loop(send, 4, now + 0.2, now + 0.5)
        return stats.sent, stats.errors, stats.histogram.get_total_count()

    sent, errors, recorded = asyncio.run(scenario())
    assert sent == recorded
    # 4 workers x ~150 calls in the whole 0.5 s, of which only the last 0.3 s counts.
    assert 0 < sent + sum(errors.values()) < calls * 0.8
    assert set(errors) == {"RESOURCE_EXHAUSTED"}
    assert errors["RESOURCE_EXHAUSTED"] > 0


def test_error_name_prefers_the_grpc_status_code() -> None:
    rpc_error = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down"
    )
    assert error_name(rpc_error) == "UNAVAILABLE"
    assert error_name(asyncio.TimeoutError()) == "DEADLINE_EXCEEDED"
    assert error_name(ValueError("empty PredictResponse")) == "ValueError"


def test_split_spreads_load_evenly() -> None:
    assert split(16, 3) == [6, 5, 5]
    assert sum(split(7, 7)) == 7


def test_load_spec_names_the_bad_field() -> None:
    with pytest.raises(ValueError, match="open loop needs rate > 0, got 0"):
        LoadSpec(mode="open", rate=0.0)
    with pytest.raises(ValueError, match="concurrency must be >= 1, got 0"):
        LoadSpec(concurrency=0)


def test_summary_reports_percentiles_in_ms_and_throughput_over_the_window() -> None:
    h = new_histogram()
    for micros in range(1, 1001):
        h.record_value(micros * 10)  # 10 us .. 10 ms, uniform
    result = summarize(h, Counter({"UNAVAILABLE": 3}), LoadSpec(duration_s=2.0), "x:1", 1000)
    assert result["throughput_rps"] == 500.0
    assert result["errors"] == 3
    assert result["error_codes"] == {"UNAVAILABLE": 3}
    assert result["p50_ms"] == pytest.approx(5.0, rel=0.01)
    assert result["p99_ms"] == pytest.approx(9.9, rel=0.01)
    assert result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] <= result["p999_ms"]
    assert HdrHistogram.decode(result["histogram"]).get_total_count() == 1000


def test_ratios_compare_against_the_baseline() -> None:
    summary = {
        "bare": {"p50_ms": 1.0, "p99_ms": 2.0, "throughput_rps": 1000.0},
        "modelplane": {"p50_ms": 1.5, "p99_ms": 5.0, "throughput_rps": 800.0},
    }
    assert ratios(summary, "modelplane", "bare") == {
        "p50_ms": 1.5,
        "p99_ms": 2.5,
        "throughput_rps": 0.8,
    }


def _count_above(h: HdrHistogram, micros: int) -> int:
    return int(
        sum(
            item.count_at_value_iterated_to
            for item in h.get_recorded_iterator()
            if item.value_iterated_to > micros
        )
    )
