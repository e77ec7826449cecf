"""Benchmark harness: load generator, reference servers and side-by-side comparisons.

Run the scripts as modules from the repository root, e.g.
``python -m loadtests.predict_vs_bare --seconds 10``.
"""
