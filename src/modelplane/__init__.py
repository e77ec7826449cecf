"""modelplane: a model registry and gRPC serving platform on Redis, Ray Serve and onnxruntime."""

from __future__ import annotations

import importlib

# Not ``typing.TYPE_CHECKING``: importing typing alone costs more than this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "start_run"]


def __getattr__(name: str) -> Any:
    # Lazy, and by name: ``import modelplane`` stays cheap (no grpc) until a
    # script tracks a run, and the packages that import ``modelplane`` for its
    # version do not depend on the tracking client. See modelplane.tracking.
    if name == "start_run":
        return importlib.import_module("modelplane.tracking").start_run
    raise AttributeError(f"module 'modelplane' has no attribute {name!r}")
