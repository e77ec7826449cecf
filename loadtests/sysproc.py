"""CPU time and memory of the processes that make up a system under test.

A system is a root process and, optionally, its descendants (Ray's raylet, GCS and
workers are all children of the process that called ``ray.init``). CPU is summed from
``psutil`` ``cpu_times`` (user + system, children included) before and after a run, so
CPU-seconds per 1,000 requests is what the *server* side spent, not the load generator.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

Selector = Callable[[psutil.Process], bool]


def process_tree(root_pid: int) -> list[psutil.Process]:
    """``root_pid`` and every descendant alive right now."""
    try:
        root = psutil.Process(root_pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cmdline_of(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def matching(root_pid: int, needle: str) -> list[psutil.Process]:
    """Descendants of ``root_pid`` whose command line (Ray sets it to ``ray::<Actor>``)
    contains ``needle``."""
    return [p for p in process_tree(root_pid) if needle in cmdline_of(p)]


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    """User + system CPU of ``processes`` so far; a process that has gone counts 0."""
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        total += t.user + t.system
    return total


def rss_bytes(processes: Iterable[psutil.Process]) -> int:
    total = 0
    for p in processes:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return total


@dataclass
class CpuMeter:
    """CPU of a fixed set of processes between :meth:`start` and :meth:`stop`.

    The set is taken at start: processes born during the run (none, once a system is
    warm) would be missed, which is why every system is warmed before it is measured.
    """

    processes: list[psutil.Process]
    _before: float = 0.0

    def start(self) -> CpuMeter:
        self._before = cpu_seconds(self.processes)
        return self

    def stop(self) -> float:
        return cpu_seconds(self.processes) - self._before


def machine() -> dict[str, Any]:
    """Cores, memory and CPU model, for BENCHMARKS.md."""
    model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "logical_cpus": psutil.cpu_count(logical=True),
        "physical_cpus": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
