"""Which asyncio event loop a reference server runs on.

modelplane's replicas run on the loop Ray gives its async actors: uvloop, when
it is installed (it comes with ``ray[serve]``). A reference server on asyncio's
default loop would give modelplane that difference for free, so the benchmarks
can run their bare servers on either and report both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

LOOPS = ("asyncio", "uvloop")

T = TypeVar("T")


def run_on(loop: str, main: Coroutine[Any, Any, T]) -> T:
    """Runs ``main`` to completion on a new loop of the kind named."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    elif loop != "asyncio":
        raise ValueError(f"loop: expected one of {', '.join(LOOPS)}, got {loop!r}")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
