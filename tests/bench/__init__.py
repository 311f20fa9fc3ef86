"""The benchmark: workerless measured beside what users would do instead (see run.py)."""
