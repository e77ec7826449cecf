"""Bootstrap intervals for figures measured in pairs on a noisy machine.

A pair (the same work with and without the thing measured, back to back) shares
the machine's moment; resampling whole pairs keeps that, so the interval is as
wide as what still differs between the two halves of a pair.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

RESAMPLES = 2000

Picks = npt.NDArray[np.intp]
# Given a (resamples, pairs) array of pair indices: the statistic of each row.
Statistic = Callable[[Picks], npt.NDArray[np.float64]]


def interval95(pairs: int, statistic: Statistic, seed: int = 0) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of ``statistic`` over resampled pairs."""
    picks = np.random.default_rng(seed).integers(0, pairs, size=(RESAMPLES, pairs))
    low, high = np.percentile(statistic(picks), [2.5, 97.5])
    return float(low), float(high)
