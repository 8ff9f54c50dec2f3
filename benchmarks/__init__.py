"""Benchmarks: ``python -m benchmarks.run`` is the project's benchmark command (see benchmarks/README.md)."""
