"""Benchmark specs and their registry (see verification.benchmarks.registry)."""
