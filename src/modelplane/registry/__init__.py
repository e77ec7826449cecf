"""The model registry: the store interface, its Redis implementation, artifacts, use cases."""
