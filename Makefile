# The two commands of the quick start are `make run` and `make test`; everything else
# is what they are made of. Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
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

.PHONY: help run test lint format types cfn-lint audit sam-validate deploy unit integration e2e openapi bench build clean system-deps

help:  ## List the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

system-deps:  ## Java 17 and Node/npm, from Debian's packages when missing (needs root)
	@command -v java >/dev/null && command -v npm >/dev/null || { \
	  echo "installing Java and Node from Debian packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless nodejs npm; }

# A person sees the first install's progress (it takes minutes); CI logs stay short.
PIP_PROGRESS := $(if $(CI),-q,--progress-bar on)

$(STAMP): requirements-dev.txt pyproject.toml layers/core/pyproject.toml layers/lambda/pyproject.toml gateway/pyproject.toml
	@echo "== installing the Python dependencies into $(VENV) (the first time takes a few minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install $(PIP_PROGRESS) -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json | system-deps
	@echo "== installing DynamoDB Local (npm)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(STAMP) $(NODE_STAMP)  ## Run the whole service locally (API on :3000, gateway on :9000)
	$(BIN)/python -m devstack

test: lint types cfn-lint sam-validate audit $(NODE_STAMP)  ## Lint, type-check, cfn-lint, audit and every test
	$(BIN)/python -m pytest -q

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

audit: $(STAMP)  ## pip-audit the dependencies that ship; fails on a known vulnerability with a fix
	$(BIN)/python -m devstack.audit

$(SAM_STAMP): requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q -r requirements-sam.txt
	touch $@

sam-validate: $(SAM_STAMP)  ## sam validate --lint (offline)
	$(SAM_ENV) $(SAM_VENV)/bin/sam validate --lint

build: $(SAM_STAMP)  ## sam build (no Docker: needs python3.12 on PATH for the arm64 layer and functions)
	$(SAM_ENV) $(SAM_VENV)/bin/sam build

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
	@for script in gateway_throughput gateway_memory reservation_roundtrip request_costs lambda_start message_log_cost sqs_candidates; do \
	  echo "== benchmarks/$$script.py"; $(BIN)/python benchmarks/$$script.py || exit 1; done

clean:  ## Remove the venv, node_modules and caches
	rm -rf $(VENV) $(SAM_VENV) node_modules .cache .aws-sam .pytest_cache .mypy_cache .ruff_cache
