# tokenwarden — two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TW := $(BIN)/tokenwarden
ORG ?= default
ADMIN ?= admin@example.com
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: install run test lint typecheck layers pytest bench clean

install: $(VENV)/.installed tests/node/node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# Node.js clients the e2e tests run unchanged (the seed's audit script, with axios)
tests/node/node_modules/.installed: tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

run: install
	@$(TW) db status --quiet || $(TW) init --org $(ORG) --admin $(ADMIN)
	$(TW) serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy src

layers: install
	$(BIN)/lint-imports --no-cache

pytest: install
	$(BIN)/pytest

test: lint typecheck layers pytest

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
