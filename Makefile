# signoff: `make demo` runs the sample workflow, `make test` runs the tests.
# Both build .venv from pyproject.toml on first use (no API key, no network beyond PyPI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test check lint typecheck bench soak eval clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/signoff demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy graph tools verifiers checkpoints

check: lint typecheck test

clean:
	rm -rf $(VENV) .signoff .pytest_cache .mypy_cache .ruff_cache
