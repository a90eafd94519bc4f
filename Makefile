# signoff: `make demo` runs the sample workflow, `make test` runs the tests.
# Both build .venv from pyproject.toml on first use (no API key, no network beyond PyPI).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo demo-api test check lint typecheck bench bench-quick soak soak-pg eval gate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/signoff demo

# The same demo with refunds going to the sample payments API, run as its own process on
# loopback port 8766 (its database and key in .signoff-payments/, outside SIGNOFF_HOME).
PAYMENTS := .signoff-payments
demo-api: $(STAMP)
	@mkdir -p $(PAYMENTS)
	@rm -f $(PAYMENTS)/payments.db*
	$(BIN)/signoff payments key --db $(PAYMENTS)/payments.db --out $(PAYMENTS)/payments.key
	@$(BIN)/signoff payments serve --port 8766 --db $(PAYMENTS)/payments.db & pid=$$!; \
	trap "kill $$pid" EXIT; \
	for i in $$(seq 50); do $(BIN)/python -c "import socket; socket.create_connection(('127.0.0.1', 8766), 1)" 2>/dev/null && break; sleep 0.2; done; \
	SIGNOFF_PAYMENTS_URL=http://127.0.0.1:8766 SIGNOFF_PAYMENTS_KEY_FILE=$(PAYMENTS)/payments.key \
	  NO_PROXY=127.0.0.1,localhost $(BIN)/signoff demo && \
	$(BIN)/python -c "import sqlite3; [print('payments API refund', *r) for r in sqlite3.connect('$(PAYMENTS)/payments.db').execute('SELECT id, order_id, amount_cents, idempotency_key FROM refunds')]"

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy cli graph tools verifiers checkpoints evals observability service worker

check: lint typecheck test

# Benchmarks (not part of the tests): writes docs/benchmarks.md with the figures it measured;
# bench.workers (section 9) needs PostgreSQL at SIGNOFF_BENCH_DATABASE_URL (default: local test db).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench
	$(BIN)/python -m bench.workers

bench-quick: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench --quick --doc bench/out/benchmarks-quick.md
	$(BIN)/python -m bench.workers --quick

# 1000 SIGKILLs at commit and checkpoint boundaries, then resume; prints the counts. Then 1000
# more with refunds going to the sample payments API (its own process, a flaky one that commits
# and then times out or hangs up), the refunds counted in the API's own database.
soak: $(STAMP)
	$(BIN)/python -m checkpoints.soak --kills 1000
	$(BIN)/python -m checkpoints.soak --kills 1000 --payments --flaky

# The 1000 SIGKILLs with every store on PostgreSQL (schemas of its own, dropped afterwards).
soak-pg: $(STAMP)
	@test -n "$$SIGNOFF_TEST_DATABASE_URL" || { echo "soak-pg needs SIGNOFF_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)"; exit 1; }
	$(BIN)/python -m checkpoints.soak --kills 1000 --database-url "$$SIGNOFF_TEST_DATABASE_URL"

# The regression and red-team sets, then shadow mode; reports under $$SIGNOFF_HOME/evals.
eval: $(STAMP)
	$(BIN)/signoff eval --set all
	$(BIN)/signoff eval --shadow

# The go/no-go release checklist.
gate: $(STAMP)
	$(BIN)/signoff gate

clean:
	rm -rf $(VENV) .signoff .signoff-payments .pytest_cache .mypy_cache .ruff_cache
