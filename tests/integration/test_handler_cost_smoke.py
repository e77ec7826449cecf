"""The in-process handler benchmark, for seconds: it runs, agrees, and gives sane numbers."""

from __future__ import annotations

import argparse
import math

import pytest

from loadtests.handler_cost import format_table, measure

pytestmark = pytest.mark.integration


def test_handler_cost_measures_both_methods_against_the_bare_handlers() -> None:
    report = measure(argparse.Namespace(pairs=3, segment=30))
    assert set(report["methods"]) == {"ModelInfer", "Predict"}
    for figures in report["methods"].values():
        assert figures["modelplane_cpu_us_median"] > 0
        assert figures["bare_cpu_us_median"] > 0
        low, high = figures["ratio_interval95"]
        assert math.isfinite(figures["ratio"]) and figures["ratio"] > 0
        assert 0 < low <= high
    assert "| ModelInfer |" in format_table(report)
