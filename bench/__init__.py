"""Benchmarks (run as scripts: ``python bench/<name>.py``); ``report`` is shared by some."""
