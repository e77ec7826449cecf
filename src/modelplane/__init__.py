"""modelplane: a model registry and gRPC serving platform on Redis, Ray Serve and onnxruntime."""

from __future__ import annotations

# Not ``typing.TYPE_CHECKING``: importing typing alone costs more than this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from modelplane.tracking import start_run as start_run

__version__ = "0.1.0"
__all__ = ["__version__", "start_run"]


def __getattr__(name: str) -> object:
    # Lazy: ``import modelplane`` stays cheap (no grpc) until a script tracks a run.
    if name == "start_run":
        from modelplane.tracking import start_run

        return start_run
    raise AttributeError(f"module 'modelplane' has no attribute {name!r}")
