# One entry point for everything: `make test` runs lint and every test, `make sandbox` starts the
# local Dataverse + Marketo stand-ins. Both build .venv from the pinned requirements when it is
# missing or older than the pins.
PYTHON ?= python3.11
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
# The relay imports the shared event parsing from plugins/, as Airflow components do.
export PYTHONPATH := $(CURDIR):$(CURDIR)/plugins

.PHONY: help venv services bench test test-distributed test-compose test-chaos env fuzz lint fmt sandbox relay demo lock clean

help:
	@echo "make test      ruff + every test (creates .venv when needed)"
	@echo "make demo      run the product on the sandbox: sandbox, relay and Airflow 3 (Ctrl-C stops all)"
	@echo "make sandbox   start the Dataverse (:8701) and Marketo (:8702) sandbox in the foreground"
	@echo "make relay     start the webhook relay (:8703) in the foreground (RELAY_* env vars)"
	@echo "make test-distributed  the end-to-end scenario on CeleryExecutor + Postgres + Redis"
	@echo "make test-compose  docker-compose.yaml started for real: webhook → lead, restarts, down"
	@echo "make test-chaos  2,000 contacts through outages, kills and API faults, exactly accounted"
	@echo "make env       write .env for docker-compose.yaml (fresh random secrets)"
	@echo "make fuzz      the fuzz properties with 50x the examples \`make test\` runs (minutes)"
	@echo "make bench     benchmarks (printed, saved under bench/results/)"
	@echo "make lock      recompile requirements*.txt from requirements*.in"
	@echo "make fmt       format the code with ruff"

venv: $(STAMP)

# The provider (provider/pyproject.toml) registers the connection types; editable, so it is
# plugins/contact_sync itself. `uv pip sync` removes it (it is in no requirements file): reinstall.
$(STAMP): requirements.txt requirements-dev.txt provider/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --editable provider
	rm -rf plugins/*.egg-info
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Debian's postgresql and redis-server (distributed tests) and chromium (browser tests), when missing.
services:
	bash devenv/test_distributed.sh --install-only

test: lint services test-compose test-chaos
	$(BIN)/python -m pytest

# docker-compose.yaml run for real (tests/deploy/test_compose_live.py): Docker Engine (installed and
# started when missing, stopped again), stand-in base images (deploy/standins), `up --build`, the
# product through the stack, restarts, `down -v`. When Docker cannot run here the test is skipped
# and this target says so in capitals. Its duration is printed: it counts against CI's 90 minutes.
COMPOSE_LOG := .compose/test-compose.log
test-compose: SHELL := /bin/bash
test-compose: $(STAMP)
	@mkdir -p .compose
	@start=$$(date +%s); \
	COMPOSE_TEST=1 $(BIN)/python -m pytest -m compose -s -rs -p no:cacheprovider --timeout=3600 \
		tests/deploy/test_compose_live.py 2>&1 | tee $(COMPOSE_LOG); status=$${PIPESTATUS[0]}; \
	echo "make test-compose: $$(( $$(date +%s) - start )) s"; \
	if grep -q "SKIPPED" $(COMPOSE_LOG); then \
		echo "*** THE DOCKER-COMPOSE DEPLOYMENT WAS NOT TESTED: see the SKIPPED reason above ***"; \
	fi; \
	exit $$status

# The chaos scenario on the live stack (tests/chaos/test_chaos_live.py): a 2,000-contact import
# through Airflow and relay outages and Marketo/Dataverse faults, then the daily quota; it prints
# its accounting. Minutes long: its duration is printed, as it counts against CI's 90 minutes.
test-chaos: $(STAMP) services
	@start=$$(date +%s); \
	CHAOS_TEST=1 $(BIN)/python -m pytest -m chaos -s -rs -p no:cacheprovider tests/chaos; \
	status=$$?; echo "make test-chaos: $$(( $$(date +%s) - start )) s"; exit $$status

env: $(STAMP)
	$(BIN)/python -m deploy.make_env
# tests/fuzz also runs in `make test`, bounded (100 inputs per property); here 5,000 each.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest tests/fuzz

sandbox: $(STAMP)
	$(BIN)/python -m sandbox

relay: $(STAMP)
	$(BIN)/python -m relay

demo: $(STAMP)
	$(BIN)/python -m devenv.demo

test-distributed: $(STAMP)
	bash devenv/test_distributed.sh

bench: $(STAMP)
	$(BIN)/python -m bench

lock: $(STAMP)
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements.in -o requirements.txt
	$(BIN)/uv pip compile --quiet --python-version 3.11 requirements-dev.in -o requirements-dev.txt

clean:
	rm -rf $(VENV) .airflow .pytest_cache .ruff_cache
