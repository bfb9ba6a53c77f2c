# Two commands on a fresh machine: `make demo` and `make test`. Each bootstraps .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs
# mypy's django plugin imports the settings module; a placeholder URL keeps it from
# starting an embedded server just to type-check.
LINT_ENV := DATABASE_URL=postgres://lint@127.0.0.1:1/lint

.PHONY: help venv demo test test-all bench lint format clean serve docs

help:
	@echo "make demo   - run the example project end to end (embedded PostgreSQL unless DATABASE_URL)"
	@echo "make test   - run the test suite on real PostgreSQL"
	@echo "make bench  - run the benchmarks in bench/ and print tables"
	@echo "make lint   - ruff check, ruff format --check, mypy --strict"
	@echo "make docs   - build the docs site strictly (warnings are errors) into site/"
	@echo "make serve  - the example project live on http://127.0.0.1:8000 (shop, admin, /dbtuning/ dashboard)"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no python3.11 or python3 on PATH; set PYTHON=/path/to/python3.11" >&2; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: $(PYTHON) is older than Python 3.11; set PYTHON=/path/to/python3.11" >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e . --group dev
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python example_project/demo.py

serve: $(STAMP)
	$(BIN)/python example_project/serve.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/tox run

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(LINT_ENV) $(BIN)/mypy

# The docs group on top of the dev install; NO_MKDOCS_2_WARNING silences Material's
# end-of-life banner, which is not a build warning.
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --group docs
	@touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --clean --site-dir site

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .tox .mypy_cache .ruff_cache .coverage htmlcov build dist site *.egg-info
