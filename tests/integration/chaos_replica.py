"""One serving replica in a process of its own, sharing the inference port.

The chaos test starts two of these on one port (SO_REUSEPORT, as the replicas of
a Ray Serve node do) and SIGKILLs one: a real process death, with no chance to
close its sockets or say goodbye. Settings come from ``MODELPLANE_*``; prints
``PORT <n>`` once serving, stops on SIGTERM/SIGINT or after ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import signal
import threading

from modelplane.config import Settings
from modelplane.serving.replica import ReplicaRuntime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--id", required=True)
    # A child left behind by a crashed test run goes away by itself.
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runtime = ReplicaRuntime(Settings(), args.id, reuse_port=True)
    try:
        print(f"PORT {runtime.port}", flush=True)
        stop.wait(timeout=args.max_seconds)
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
