# Two commands: `make run` serves the local stack, `make test` runs every check.
# Both create .venv and install what they need; nothing is installed by hand.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Lambda runtime and architecture `sam build` targets here: this machine's own Python.
LOCAL_RUNTIME := python$(shell $(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
LOCAL_ARCH := $(shell uname -m | sed -e 's/aarch64/arm64/')
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: install run test lint typecheck template unit bench clean

$(STAMP): pyproject.toml layer/requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/roomcast serve

test: lint typecheck template unit

lint: $(STAMP)
	$(BIN)/ruff check src local tests bench
	$(BIN)/ruff format --check src local tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

template: $(STAMP)
	$(BIN)/sam validate --lint
	$(BIN)/sam build --parameter-overrides Runtime=$(LOCAL_RUNTIME) Architecture=$(LOCAL_ARCH) \
		--build-dir .aws-sam/build

unit: $(STAMP)
	$(BIN)/pytest -n auto

# Measurements, not tests: writes bench/results.json, docs/performance.md and docs/fanout.png.
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
