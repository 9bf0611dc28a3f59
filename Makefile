# One virtualenv in .venv; every target installs what it needs first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test lint typecheck unit bench clean

$(BIN)/c360: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/c360

demo: install  ## the gateway over the built-in vendor sandboxes, with GraphiQL
	$(BIN)/c360 demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: lint typecheck  ## lint, strict types, then every test with branch coverage
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine -q
	$(BIN)/coverage report --fail-under=80

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .coverage .mypy_cache .pytest_cache .ruff_cache
