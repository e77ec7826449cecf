"""The tracking-overhead benchmark, for a few seconds: it runs and its figures are sane."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from loadtests.tracking_overhead import SgdStep

pytestmark = pytest.mark.integration


def test_the_sgd_step_trains() -> None:
    # The stand-in loop must be a real training step: its loss goes down.
    step = SgdStep(np.random.default_rng(0))
    first = np.mean([step() for _ in range(20)])
    for _ in range(500):
        step()
    assert np.mean([step() for _ in range(20)]) < first / 2


def test_the_benchmark_reports_sane_figures() -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "loadtests.tracking_overhead", "--points", "3000",
            "--repeats", "1", "--segment", "300",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    in_loop = float(re.search(r"log_metric in the loop\s+(-?[\d.]+) us", out).group(1))  # type: ignore[union-attr]
    sender = float(re.search(r"sender thread CPU\s+([\d.]+) us", out).group(1))  # type: ignore[union-attr]
    step = float(re.search(r"bare loop .*\(([\d.]+) us/step\)", out).group(1))  # type: ignore[union-attr]
    # Microseconds a point: more than nothing, far less than a step's worth.
    assert 0 < in_loop < 200
    assert 0 < sender < 500
    assert step > 20
    paired = re.search(
        r"paired wall time\s+([-+][\d.]+) % \(95 % interval ([-+][\d.]+) to ([-+][\d.]+) %\) "
        r"over (\d+) pairs of 300 steps.*; (\d+) batches sent",
        out,
    )
    assert paired is not None, out
    overhead, low, high = (float(paired.group(i)) for i in (1, 2, 3))
    assert low <= overhead <= high
    assert int(paired.group(4)) == 10  # 3000 points in segments of 300
    assert int(paired.group(5)) >= 1  # the points went out, woken by the benchmark
