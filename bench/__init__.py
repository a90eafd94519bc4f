"""signoff's benchmarks: the cost of the controls, side by side with the alternatives.

Not part of the test suite. `python -m bench` (or `make bench`) runs every section and
writes docs/benchmarks.md; `python -m bench --quick` is a ~1 minute pass.
"""
