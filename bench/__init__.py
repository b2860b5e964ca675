"""classify-gateway benchmark suite: `python -m bench [--quick]` (see docs/benchmarks.md)."""
