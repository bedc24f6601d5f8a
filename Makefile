# One entry point for newcomers and CI: `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest run bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy config_service client

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

run: install
	$(BIN)/tskcfg serve

bench: install
	$(BIN)/python bench/run.py --output docs/benchmarks.md

bench-quick: install
	$(BIN)/python bench/run.py --quick --output bench/results/benchmarks-quick.md

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis
