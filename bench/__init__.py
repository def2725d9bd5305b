"""Benchmarks: speed and size figures printed as tables. Not tests: nothing here asserts a time."""
