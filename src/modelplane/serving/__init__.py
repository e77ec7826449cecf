"""The data plane: a Ray Serve application whose replicas answer Predict over gRPC."""
