# The two commands of the README: `make dev` (run the service) and `make test` (run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install dev test test-unit lint format bench bench-quick bench-kube

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed
	./scripts/system-deps.sh

dev: install
	$(BIN)/cairn dev

# test files spread over TEST_WORKERS processes (pytest-xdist), each with its own session:
# database, Temporal dev server, workers and API; a file's tests stay in one process. The
# fuzz tests run after, in one process: schemathesis expands its lazy schema into one test
# per operation only there (under xdist 4 tests ran instead of 130)
TEST_WORKERS ?= 2

test: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not fuzz"
	$(BIN)/pytest -m fuzz

test-unit: install
	$(BIN)/pytest -m "not integration"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# issue 13's whole table (about half an hour here), then a short variant (a few minutes);
# both end with RESULT name=value lines (docs/performance.md)
bench: install
	$(BIN)/python -m bench.run

bench-quick: install
	$(BIN)/python -m bench.run --quick

# a backup through the Kubernetes platform (the API fake) beside the local platform, same
# data; ends with RESULT kube_backup_vs_local=<ratio> (--quick: small sizes)
bench-kube: install
	$(BIN)/python -m bench.kube_backup
