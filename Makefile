# One entry point for newcomers and CI: `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck pytest run bench bench-quick screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .

typecheck: install
	# mypy does not follow the editable install's import hook: it reads client/ as tskcfg through a link.
	mkdir -p $(VENV)/typing && ln -sfn ../../client $(VENV)/typing/tskcfg
	MYPYPATH=$(VENV)/typing $(BIN)/mypy -p config_service -p tskcfg

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

run: install
	$(BIN)/tskcfg serve

bench: install
	$(BIN)/python bench/run.py --output docs/benchmarks.md

bench-quick: install
	$(BIN)/python bench/run.py --quick --output bench/results/benchmarks-quick.md

# PNGs of the console's pages for docs/console.md (needs /usr/bin/chromium; not part of `make test`).
screenshots: install
	$(BIN)/python -m tests.console.screenshots --output docs/console

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis
