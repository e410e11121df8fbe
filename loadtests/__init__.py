"""Load tests and benchmarks (`python -m loadtests.<name>`); reports go to `reports/`."""
