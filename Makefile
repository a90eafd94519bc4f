# signoff: `make demo` runs the sample workflow, `make test` runs the tests.
# Both build .venv from pyproject.toml on first use (no API key, no network beyond PyPI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test check lint typecheck bench bench-quick soak eval gate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/signoff demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy cli graph tools verifiers checkpoints evals observability service

check: lint typecheck test

# Benchmarks (not part of the tests): writes docs/benchmarks.md with the figures it measured.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench --quick --doc bench/out/benchmarks-quick.md

# 1000 SIGKILLs at commit and checkpoint boundaries, then resume; prints the counts.
soak: $(STAMP)
	$(BIN)/python -m checkpoints.soak --kills 1000

# The regression and red-team sets, then shadow mode; reports under $$SIGNOFF_HOME/evals.
eval: $(STAMP)
	$(BIN)/signoff eval --set all
	$(BIN)/signoff eval --shadow

# The go/no-go release checklist.
gate: $(STAMP)
	$(BIN)/signoff gate

clean:
	rm -rf $(VENV) .signoff .pytest_cache .mypy_cache .ruff_cache
