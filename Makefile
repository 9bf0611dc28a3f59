# One virtualenv in .venv; every target installs what it needs first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# `make demo PORT=8080 SANDBOX_PORT=9700 ISSUER_PORT=9701`; a port left out is
# the usual one (8000, 8700, the sandbox's + 1) when free, else any free port.
PORT ?=
SANDBOX_PORT ?=
ISSUER_PORT ?=
# The real OIDC provider the end-to-end token test runs (npm's oauth2-mock-server).
OIDC := tests/oidc

.PHONY: install demo test test-prerequisites lint typecheck unit bench clean mutate

# Each missing prerequisite is one line saying what to install.
$(BIN)/c360: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: c360 needs Python >= 3.11, and $(PYTHON) is $$(command -v $(PYTHON) >/dev/null && $(PYTHON) --version 2>&1 || echo missing): install one (or run make PYTHON=python3.12)" >&2; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  echo "make: $(PYTHON) cannot make a virtualenv: install its venv module (Debian: apt-get install python3-venv)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/c360

demo: install  ## the gateway over the built-in vendor sandboxes, with GraphiQL
	$(BIN)/c360 demo $(if $(PORT),--port $(PORT)) $(if $(SANDBOX_PORT),--sandbox-port $(SANDBOX_PORT)) \
		$(if $(ISSUER_PORT),--issuer-port $(ISSUER_PORT))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# What make test needs besides Python: redis-server, and Node.js for the OIDC test.
test-prerequisites: $(OIDC)/node_modules/.package-lock.json
	@command -v redis-server >/dev/null || { \
	  echo "make test: redis-server is not installed: install it (Debian: apt-get install redis-server)" >&2; exit 1; }

# npm ci writes node_modules/.package-lock.json: installed once, again when the lock changes.
$(OIDC)/node_modules/.package-lock.json: $(OIDC)/package-lock.json
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null \
	  && command -v npm >/dev/null || { \
	  echo "make test: the OIDC provider test needs Node.js >= 20.19 with npm (found: $$(node --version 2>/dev/null || echo no node)): install it (Debian 12's nodejs is 18: take NodeSource's nodejs 20 or 22)" >&2; exit 1; }
	npm ci --prefix $(OIDC) --no-audit --no-fund --loglevel=error

test: test-prerequisites lint typecheck  ## lint, strict types, then every test with branch coverage
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
