# Two commands: `make run` serves the local stack, `make test` runs every check.
# Both create .venv and install what they need; nothing is installed by hand.

# Any Python from 3.11 on PATH, newest first (tools/dev-python says why); `make PYTHON=python3.12` chooses one.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell tools/dev-python 2>/dev/null)
endif
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
	$(if $(SNAPSTART),'SnapStart=$(SNAPSTART)') \
	$(if $(ROUTE_PER_ACTION),'RoutePerAction=$(ROUTE_PER_ACTION)') \
	$(if $(RESERVE_BROADCAST_CONCURRENCY),'ReserveBroadcastConcurrency=$(RESERVE_BROADCAST_CONCURRENCY)')
# Deploy to the region of the user's own AWS configuration, not the fake one the tests export below.
DEPLOY_REGION := $(AWS_REGION)$(if $(AWS_REGION),,$(AWS_DEFAULT_REGION))
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: install run test lint typecheck template build deploy unit typescript bench asyncapi emitters clean print-python

$(STAMP): pyproject.toml layer/requirements.txt requirements-dev.txt emitters/python/pyproject.toml
	@test -n "$(PYTHON)" || tools/dev-python >/dev/null
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The Python emitter for backend services (emitters/python), installed as a service installs it.
	$(BIN)/python -m pip install --quiet -e ./emitters/python
	touch $@

# At package-lock.json's versions: the real socket.io-client the e2e tests drive (tests/e2e/socketio_client.mjs)
# and the AsyncAPI schema docs/asyncapi.yaml is checked against.
# Node.js and npm: those on PATH, else Debian's packages, installed as chromium is below.
NODE_STAMP := node_modules/.installed
SYSTEM_NPM := /usr/bin/npm
NPM := $(or $(shell command -v npm 2>/dev/null),$(SYSTEM_NPM))
$(NODE_STAMP): package.json package-lock.json emitters/typescript/package.json | $(NPM)
	$(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser tests/e2e/test_console.py drives through Playwright: Debian's package (Playwright's own download
# of browsers is never used). sudo only where make does not run as root.
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(SYSTEM_NPM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm

install: $(STAMP) $(NODE_STAMP) $(CHROMIUM)

# The console (http://127.0.0.1:3001/) serves socket.io-client's browser bundle from node_modules.
# PARAMETERS: template parameters, e.g. `make run PARAMETERS=RoutePerAction=false`.
run: $(STAMP) $(NODE_STAMP)
	$(BIN)/roomcast serve $(if $(PARAMETERS),--parameter-overrides $(PARAMETERS))

test: lint typecheck template typescript unit

lint: $(STAMP)
	$(BIN)/ruff check src local tests bench emitters/python
	$(BIN)/ruff format --check src local tests bench emitters/python

typecheck: $(STAMP)
	$(BIN)/mypy

template: build
	$(BIN)/sam validate --lint

# sam build without Docker needs the runtime's own Python on PATH: tools/lambda-python finds or installs it.
# Then every function's code and the layer are compiled to bytecode with that Python (decision 0067): Lambda's
# code directories are read-only, so what ships without .pyc is compiled again by every cold start.
# unchecked-hash: the .pyc is used as it is, whatever timestamps the zip gives its source.
build: $(STAMP)
	python_dir=$$(tools/lambda-python $(RUNTIME)) && \
		PATH="$$python_dir:$$PATH" $(BIN)/sam build --parameter-overrides $(BUILD_PARAMETERS) && \
		"$$python_dir/$(RUNTIME)" -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build

# Builds, then deploys what it built, with the same parameters (docs/deploy.md).
deploy: build
	$(if $(DEPLOY_REGION),AWS_DEFAULT_REGION=$(DEPLOY_REGION),env -u AWS_DEFAULT_REGION) $(BIN)/sam deploy \
		--stack-name $(STACK) --parameter-overrides $(DEPLOY_PARAMETERS)

# The TypeScript emitter (emitters/typescript): compiled with its pinned tsc, then its own tests (node --test).
# tests/e2e/test_emitters.py drives what this compiles against the local stack.
typescript: $(NODE_STAMP)
	$(NPM) run build --workspace @roomcast/emitter
	$(NPM) test --workspace @roomcast/emitter

# loadgroup: a module marked xdist_group (the console's: one stack, one browser) runs on one worker.
unit: $(STAMP) $(NODE_STAMP) $(CHROMIUM) typescript
	$(BIN)/pytest -n auto --dist loadgroup

# Measurements, not tests: writes bench/results.json, docs/performance.md and docs/fanout.png. `make bench
# PIECES="cpu"` runs only those pieces (fanout, cpu, calls, latency, large_room, cold_start, e2e,
# hot_conversation, presence_capacity, capacity), keeping the rest.
bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python -m bench $(PIECES)

# docs/asyncapi.yaml from the action and outbound models (tests/test_asyncapi.py checks it is current), then the
# emitters' contract modules from it.
asyncapi: $(STAMP)
	$(BIN)/python -m roomcast_local.asyncapi > docs/asyncapi.yaml
	$(MAKE) emitters

# emitters/*/contract from docs/asyncapi.yaml's bus channel (tests/test_emitters.py checks they are current).
emitters: $(STAMP)
	$(BIN)/python -m roomcast_local.emitters

# The interpreter .venv is (or would be) created with.
print-python:
	@echo $(PYTHON)

clean:
	rm -rf $(VENV) node_modules .aws-sam .pytest_cache .mypy_cache .ruff_cache emitters/typescript/dist
