"""Benchmarks and developer tools, run from the repository root: ``python -m scripts.bench.<name>``."""
