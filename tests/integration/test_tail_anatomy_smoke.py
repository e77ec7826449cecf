"""The tail-anatomy benchmark without Ray, for seconds: both servers answer and every
window carries its latencies and its serving process's per-request thread times."""

from __future__ import annotations

import argparse
import os

import pytest

from loadtests.tail_anatomy import per_request, run, thread_times

pytestmark = pytest.mark.integration


def test_thread_times_read_this_process_and_per_request_divides_them() -> None:
    before = thread_times(os.getpid())
    sum(i * i for i in range(200_000))  # some CPU on this thread
    after = thread_times(os.getpid())
    assert os.getpid() in after  # the main thread's id is the process id
    figures = per_request(before, after, requests=10)
    assert figures["cpu_us"] > 0
    assert figures["busiest"][0]["cpu_us"] > 0


def test_tail_anatomy_measures_the_bare_server_and_the_replica_process() -> None:
    args = argparse.Namespace(
        rate=100.0, seconds=1.5, warmup=0.5, rounds=1, model="tiny", no_ray=True
    )
    report = run(args, say=lambda _: None)
    assert set(report["windows"]) == {"bare", "replica-process"}
    for name, windows in report["windows"].items():
        (measured,) = windows
        assert measured["errors"] == 0, name
        assert 0 < measured["p50_ms"] <= measured["p99_ms"] <= measured["p999_ms"]
        assert measured["throughput_rps"] > 50
        threads = measured["threads"]
        # Serving 150 requests costs the server's threads CPU and some waiting.
        assert threads["cpu_us"] > 0 and threads["wait_us"] >= 0
        assert threads["busiest"], name
