# Two commands: `make run` serves the local stack, `make test` runs every check.
# Both create .venv and install what they need; nothing is installed by hand.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Lambda build `make template` checks and `make deploy` ships: one set of values for both, the
# template's defaults and samconfig.toml's (tests/test_deploy_config.py keeps the three in step).
RUNTIME ?= python3.13
ARCHITECTURE ?= arm64
TRACING ?= Disabled
BUILD_PARAMETERS = Runtime=$(RUNTIME) Architecture=$(ARCHITECTURE) Tracing=$(TRACING)
# Deploy settings; an unset one keeps the stack's current value (or the template default on creation).
STACK ?= roomcast
DEPLOY_PARAMETERS = $(BUILD_PARAMETERS) \
	$(if $(ALLOWED_ORIGINS),'AllowedOrigins=$(ALLOWED_ORIGINS)') \
	$(if $(JWT_SECRET_ARN),'JwtSecretArn=$(JWT_SECRET_ARN)') \
	$(if $(JWT_SECRET_KMS_KEY_ARN),'JwtSecretKmsKeyArn=$(JWT_SECRET_KMS_KEY_ARN)') \
	$(if $(EVENT_BUS_NAME),'EventBusName=$(EVENT_BUS_NAME)') \
	$(if $(ALARM_TOPIC_ARN),'AlarmTopicArn=$(ALARM_TOPIC_ARN)') \
	$(if $(SNAPSTART),'SnapStart=$(SNAPSTART)')
# Deploy to the region of the user's own AWS configuration, not the fake one the tests export below.
DEPLOY_REGION := $(AWS_REGION)$(if $(AWS_REGION),,$(AWS_DEFAULT_REGION))
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: install run test lint typecheck template build deploy unit bench asyncapi clean

$(STAMP): pyproject.toml layer/requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# At package-lock.json's versions: the real socket.io-client the e2e tests drive (tests/e2e/socketio_client.mjs)
# and the AsyncAPI schema docs/asyncapi.yaml is checked against.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser tests/e2e/test_console.py drives through Playwright: Debian's package (Playwright's own download
# of browsers is never used). sudo only where make does not run as root.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

install: $(STAMP) $(NODE_STAMP) $(CHROMIUM)

# The console (http://127.0.0.1:3001/) serves socket.io-client's browser bundle from node_modules.
run: $(STAMP) $(NODE_STAMP)
	$(BIN)/roomcast serve

test: lint typecheck template unit

lint: $(STAMP)
	$(BIN)/ruff check src local tests bench
	$(BIN)/ruff format --check src local tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

template: build
	$(BIN)/sam validate --lint

# sam build without Docker needs the runtime's own Python on PATH: tools/lambda-python finds or installs it.
build: $(STAMP)
	python_dir=$$(tools/lambda-python $(RUNTIME)) && \
		PATH="$$python_dir:$$PATH" $(BIN)/sam build --parameter-overrides $(BUILD_PARAMETERS)

# Builds, then deploys what it built, with the same parameters (docs/deploy.md).
deploy: build
	$(if $(DEPLOY_REGION),AWS_DEFAULT_REGION=$(DEPLOY_REGION),env -u AWS_DEFAULT_REGION) $(BIN)/sam deploy \
		--stack-name $(STACK) --parameter-overrides $(DEPLOY_PARAMETERS)

# loadgroup: a module marked xdist_group (the console's: one stack, one browser) runs on one worker.
unit: $(STAMP) $(NODE_STAMP) $(CHROMIUM)
	$(BIN)/pytest -n auto --dist loadgroup

# Measurements, not tests: writes bench/results.json, docs/performance.md and docs/fanout.png. `make bench
# PIECES="cpu"` runs only those pieces (fanout, cpu, calls, latency, large_room, cold_start, e2e), keeping the rest.
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench $(PIECES)

# docs/asyncapi.yaml from the action and outbound models (tests/test_asyncapi.py checks it is current).
asyncapi: $(STAMP)
	$(BIN)/python -m roomcast_local.asyncapi > docs/asyncapi.yaml

clean:
	rm -rf $(VENV) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache
