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
        [sys.executable, "-m", "loadtests.tracking_overhead", "--points", "3000", "--repeats", "1"],
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
