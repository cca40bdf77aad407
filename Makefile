# Two entry points for a newcomer: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/synthetic.toml
PORT ?= 8000

.PHONY: demo pipeline serve test lint bench docker-test clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[train,ann,redis,bench,dev]"
	touch $@

venv: $(VENV)/.installed

## Train, distil, export, evaluate and publish on the built-in synthetic shop, then serve it.
demo: venv
	$(BIN)/recdistill pipeline --config $(CONFIG)
	$(BIN)/recdistill serve --models models --port $(PORT)

pipeline: venv
	$(BIN)/recdistill pipeline --config $(CONFIG)

serve: venv
	$(BIN)/recdistill serve --models models --port $(PORT)

## The whole test suite (CPU only, seeded). First installs what the tests need beyond Python packages
## (redis-server, chromium, wrk as root; the ml-100k cache), naming anything it could not install.
test: venv
	bash scripts/test-deps.sh
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check recdistill app training core bench tests
	$(BIN)/ruff format --check recdistill app training core bench tests
	$(BIN)/mypy app core

bench: venv
	$(BIN)/python -m bench.run_all

docker-test: venv
	bash scripts/docker-test.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
