# The two commands of the quick start are `make run` and `make test`; everything else
# is what they are made of. Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help run test lint format types cfn-lint unit integration e2e openapi bench build clean system-deps

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

system-deps:  ## Java 17 and Node/npm, from Debian's packages when missing (needs root)
	@command -v java >/dev/null && command -v npm >/dev/null || { \
	  echo "installing Java and Node from Debian packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless nodejs npm; }

$(STAMP): requirements-dev.txt pyproject.toml layers/core/pyproject.toml gateway/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json | system-deps
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(STAMP) $(NODE_STAMP)  ## Run the whole service locally (API on :3000, gateway on :9000)
	$(BIN)/python -m devstack

test: lint types cfn-lint $(NODE_STAMP)  ## Lint, type-check, cfn-lint and every test
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff lint and format check, hadolint on the gateway image
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint gateway/Dockerfile

format: $(STAMP)  ## Format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

types: $(STAMP)  ## mypy (strict) on the core, gateway, functions and tools
	$(BIN)/mypy layers/core gateway/evreserve_gateway devstack simulator $(wildcard functions/*/*.py)

cfn-lint: $(STAMP)  ## Lint template.yaml
	$(BIN)/cfn-lint template.yaml

unit: $(STAMP)  ## Unit tests only (no servers)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP) $(NODE_STAMP)  ## Integration tests (local DynamoDB / SQS servers)
	$(BIN)/python -m pytest -q tests/integration

e2e: $(STAMP) $(NODE_STAMP)  ## End-to-end tests over the whole local stack
	$(BIN)/python -m pytest -q tests/e2e

bench: $(STAMP) $(NODE_STAMP)  ## Run the benchmarks
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:  ## Remove the venv, node_modules and caches
	rm -rf $(VENV) node_modules .cache .aws-sam .pytest_cache .mypy_cache .ruff_cache
