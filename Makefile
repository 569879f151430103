# `make run` and `make test` each install what they need, then do their job.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
ASSETS_STAMP := src/waggle/web/static/vendor/.stamp

.PHONY: install run test lint bench clean system-packages services

install: $(STAMP) $(ASSETS_STAMP)

# setup.py builds the trackers' C extension: a change to it or its source
# reinstalls, and pyproject's [tool.uv] cache-keys make uv rebuild it.
$(STAMP): pyproject.toml setup.py src/waggle/signals/_tracker_native.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	PYTHON=$(BIN)/python bash scripts/ensure-system-packages.sh --build
	$(BIN)/pip install --quiet --upgrade pip uv
	# --compile-bytecode as pip does: compiling at import time would raise the
	# SyntaxWarnings of old packages (jieba), which the tests turn into errors.
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

$(ASSETS_STAMP): package.json scripts/vendor-assets.sh
	bash scripts/vendor-assets.sh
	touch $(ASSETS_STAMP)

run: install
	bash scripts/ensure-system-packages.sh --runtime
	$(BIN)/waggle db upgrade
	$(BIN)/waggle demo --if-empty
	$(BIN)/waggle serve --feed-demo-signals

system-packages:
	bash scripts/ensure-system-packages.sh

services:
	bash scripts/ensure-services.sh

test: install system-packages services
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: install services
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) node_modules src/waggle/web/static/vendor var
