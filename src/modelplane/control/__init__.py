"""The control plane: gRPC servicers over the registry, routing and telemetry."""
