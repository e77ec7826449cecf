"""modelplane: a model registry and gRPC serving platform on Redis, Ray Serve and onnxruntime."""

__version__ = "0.1.0"
