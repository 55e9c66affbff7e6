"""Benchmarks: each prints ratios against the tool it wraps, measured in the same run."""
