# One virtualenv in .venv; every target installs what it needs first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: install demo test lint typecheck unit bench clean mutate

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

# Mutation testing (bench/mutation.py, docs/mutation.md): not run by `test` or CI.
# MODULES: files of [tool.mutmut] only_mutate (default: all), one at a time;
# MUTATE_TESTS: a narrower test selection than [tool.mutmut]'s.
MODULES ?=
MUTATE_TESTS ?=
MUTATE_JOBS ?= 2
MUTATE_FAIL_UNDER ?= 90

mutate: install  ## kill rate per module of the access, masking, identity and audit code
	$(BIN)/python bench/mutation.py $(MODULES) --jobs $(MUTATE_JOBS) \
		--fail-under $(MUTATE_FAIL_UNDER) $(if $(MUTATE_TESTS),--tests $(MUTATE_TESTS))

clean:
	rm -rf $(VENV) .coverage .mypy_cache .pytest_cache .ruff_cache mutants
