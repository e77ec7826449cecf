"""PNG of metric curves, one panel per metric, one line per run (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# (run label, steps, values) per metric key.
Curves = Mapping[str, Sequence[tuple[str, Sequence[int], Sequence[float]]]]


def plot_curves(curves: Curves, out: Path, title: str = "") -> Path:
    # Imported here: matplotlib takes ~0.3 s to import and only this command needs it.
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import pyplot as plt

    keys = sorted(curves)
    if not keys:
        raise ValueError("no metric to plot: the runs have none of the requested metrics")
    figure, axes = plt.subplots(
        len(keys), 1, figsize=(8, 3 * len(keys)), squeeze=False, constrained_layout=True
    )
    try:
        for axis, key in zip(axes[:, 0], keys, strict=True):
            for label, steps, values in curves[key]:
                axis.plot(steps, values, label=label, linewidth=1)
            axis.set_title(key)
            axis.set_xlabel("step")
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize="small")
        if title:
            figure.suptitle(title)
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, format="png", dpi=100)
    finally:
        plt.close(figure)
    return out
