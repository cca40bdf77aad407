"""Benchmarks: each writes bench/results/<name>.json and .md; none is asserted in the test suite."""
