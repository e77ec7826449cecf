"""Experiment tracking, environments and promotion: the lifecycle around the registry."""
