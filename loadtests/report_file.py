"""Where the benchmarks keep their JSON results, and writing one there."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_report(report: Mapping[str, Any], name: str, out: Path | None = None) -> Path:
    """Writes ``report`` to ``out``, or else to ``results/NAME-<local time>.json``."""
    if out is None:
        out = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return out
