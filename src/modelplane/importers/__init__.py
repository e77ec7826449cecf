"""Bringing models and their history over from other registries."""
