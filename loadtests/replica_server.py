"""One modelplane serving replica in its own process, without Ray.

The same ``ReplicaRuntime`` a Serve replica hosts, on its own port (no SO_REUSEPORT),
so a benchmark can address each replica separately: route propagation is measured
per replica, and two replicas with different settings can be loaded side by side.
Settings come from ``MODELPLANE_*`` (redis URL, data dir, batching...). Prints
``PORT <n>`` once serving, stops on SIGTERM/SIGINT or after ``--max-seconds``.

    MODELPLANE_REDIS_URL=redis://... python -m loadtests.replica_server --id r1
"""

from __future__ import annotations

import argparse
import signal
import threading

from modelplane.config import Settings
from modelplane.serving.replica import ReplicaRuntime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--id", required=True, help="replica id reported to the directory")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)
    settings = Settings().model_copy(update={"inference_port": 0})
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runtime = ReplicaRuntime(settings, args.id, reuse_port=False)
    try:
        print(f"PORT {runtime.port}", flush=True)
        stop.wait(timeout=args.max_seconds)
    finally:
        runtime.close()


if __name__ == "__main__":
    main()
