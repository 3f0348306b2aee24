"""nnspec's benchmarks, run on demand: ``python -m bench`` rewrites BENCHMARKS.md."""
