# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# llama-cpp-python compiles llama.cpp; use both cores, and pip's wheel cache afterwards.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install demo test services lint bench-engine clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/gatehouse demo --host 127.0.0.1 --port 8080

services:
	bash scripts/install-test-services.sh

test: lint services
	$(BIN)/python -m pytest -q

# Style, the architecture contracts (import-linter, pyproject.toml) and types; make test runs it first.
lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench-engine: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/gatehouse bench engine --json engine-report.json

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
