# cmbcluster-deploy: every target a person runs is the one CI runs.
# Usage: make <target> CLOUD=aws|gcp|local [ENV_FILE=env/aws.env], or TARGET=<name> (env/<name>.env)

SHELL := /bin/bash
.DEFAULT_GOAL := help
CLOUD ?= local
# A target is data: TARGET=aws-eu reads env/aws-eu.env (its cloud is its CLOUD_PROVIDER) and writes under
# out/aws-eu/ (its plan under out/plan/aws-eu/); without TARGET, CLOUD=aws is the target aws (today's paths)
TARGET ?=
TARGET_NAME = $(or $(TARGET),$(CLOUD))
# The fleet: its targets and their waves (make validate-fleet)
FLEET ?= fleet.yaml
# make fleet-deploy: most targets of a wave at once, and its own flags (e.g. FLEET_ARGS="--images out/images.json")
JOBS ?= 2
FLEET_ARGS ?=
# make status's own flags, e.g. STATUS_ARGS=--no-endpoints (a cluster with no ingress)
STATUS_ARGS ?=
# Your env/<target>.env when it exists, else the example (fine for `plan`, refused by deploys)
ENV_FILE ?= $(if $(wildcard env/$(TARGET_NAME).env),env/$(TARGET_NAME).env,env/$(TARGET_NAME).env.example)
VENV := .venv
PY := $(VENV)/bin/python
IMAGES_FILE ?= $(if $(TARGET),out/$(TARGET)/images.json,out/images.json)
# Within `make deploy` (a target-specific variable reaches every step of the chain), helm-deploy writes the
# revision it made, or none, and smoke rolls back only that one: a no-op deploy's smoke rolls nothing back
REVISION_FILE = $(dir $(IMAGES_FILE))deployed-revision
PLAN_DIR = out/plan/$(TARGET_NAME)
ARGS ?=
# Extra flags of one step only (so a whole chain can pass them): e.g. SMOKE_ARGS=--no-endpoints
HELM_DEPLOY_ARGS ?=
SMOKE_ARGS ?=
# DRY_RUN=true: build, secrets, certs, helm-deploy and dns say what they would change and change nothing;
# smoke only checks (no rollback on failure)
DRY_RUN ?=
DRY_FLAG = $(if $(filter true 1 yes,$(DRY_RUN)),--dry-run)
# What the steps set up first: `setup` (the toolkit and the test tools) on a laptop and in CI's test jobs,
# `setup-deploy` (the runtime dependencies only, from the hash-locked requirements/deploy.txt) in the
# GitHub deploy jobs, which hold cloud credentials
SETUP ?= setup
LOCK := requirements/deploy.txt
STEP_ARGS = $(if $(TARGET),,--cloud $(CLOUD) )--env-file $(ENV_FILE)
# GitHub environments are <target>-<env>; without TARGET the target is the cloud (<cloud>-<env>)
GITHUB_TARGET = $(if $(TARGET),--target $(TARGET),--cloud $(CLOUD))
# make demo DEMO_FAIL=crash: after the healthy deploy, a crashing backend diagnosed and rolled back
DEMO_FAIL ?=

.PHONY: help setup setup-deploy lock lock-test plan validate validate-fleet fleet-deploy status build copy-images rbac cloud-setup github-setup github-gate secrets certs helm-deploy dns smoke deploy deploy-aws deploy-gcp \
        deploy-local migrate-database test test-quick lint lint-workflows lint-chart bench bench-help bench-build bench-smoke bench-deploy \
        testbed-up testbed-down demo demo-down setup-checkov setup-awscli setup-chartpress clean
# The chain's steps run one after the other, in the order written, even under `make -j`
.NOTPARALLEL:

help: ## List every target with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST) \
	  | if [ -t 1 ]; then cat; else sed 's/\x1b\[[0-9;]*m//g'; fi

$(VENV)/.installed: pyproject.toml requirements/test-constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' -c requirements/test-constraints.txt --config-settings editable_mode=compat
	$(PY) -m tools.install_helm --with-helm3
	@touch $@

setup: $(VENV)/.installed ## Create .venv, install the toolkit and a real helm (the one on PATH, else a pinned one)

$(VENV)/.deploy-installed: $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m tools.install_helm --pinned
	@touch $@

setup-deploy: $(VENV)/.deploy-installed ## Deploy jobs: .venv with only the runtime dependencies (hash-locked) and the pinned helm

lock-test: setup ## Write requirements/test-constraints.txt again from .venv (after upgrading a test tool and a green `make test`)
	@{ sed -n '1,3p' requirements/test-constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^#' | sort -f; } > requirements/test-constraints.txt.new
	@mv requirements/test-constraints.txt.new requirements/test-constraints.txt

lock: setup ## Write requirements/deploy.txt again from pyproject.toml: every runtime dependency pinned with hashes
	$(PY) -m tools.lock

plan: $(SETUP) ## Validate, compute image tags, render the chart to out/plan/TARGET (no cloud access)
	@echo "plan for $(TARGET_NAME) with $(ENV_FILE)"
	$(PY) -m tools.plan $(STEP_ARGS) --out $(PLAN_DIR) $(ARGS)

validate: $(SETUP) ## Check configuration and secrets (exit 1 on any error)
	$(PY) -m tools.validate_secrets $(STEP_ARGS) $(ARGS)

fleet-deploy: $(SETUP) ## Roll out to FLEET wave by wave: build once, copy by digest, JOBS targets at once, logs in out/<target>/
	$(PY) -m tools.fleet_deploy --fleet $(FLEET) --jobs $(JOBS) $(DRY_FLAG) $(FLEET_ARGS)

status: $(SETUP) ## Per target of FLEET (or TARGET=): release, images, pods ready, endpoints, drift; exit 1 on drift or unhealthy
	$(PY) -m tools.fleet_status --fleet $(FLEET) $(if $(TARGET),--target $(TARGET)) $(STATUS_ARGS)

validate-fleet: $(SETUP) ## Check every target of FLEET at once: settings, unique buckets, hosts and cluster+namespace
	$(PY) -m tools.fleet_validate --fleet $(FLEET) $(ARGS)

build: $(SETUP) ## Build and push the three images (skips unchanged ones), write out/images.json
	$(PY) -m tools.build_push $(STEP_ARGS) --output $(IMAGES_FILE) $(DRY_FLAG) $(ARGS)

copy-images: $(SETUP) ## Promotion: copy the listed images into this environment's registry by digest (when it is another), rewrite out/images.json
	$(PY) -m tools.copy_images $(STEP_ARGS) --images-file $(IMAGES_FILE) --output $(IMAGES_FILE) $(DRY_FLAG) $(ARGS)

rbac: $(SETUP) ## Print the Kubernetes RBAC the deploy identity needs (a cluster admin applies it once)
	@$(PY) -m tools.rbac $(STEP_ARGS) $(ARGS)

cloud-setup: $(SETUP) ## Print what a cloud admin creates once for GitHub deploys: OIDC trust, least-privilege policy, bindings
	@$(PY) -m tools.cloud_setup $(STEP_ARGS) $(if $(TARGET),--target $(TARGET)) $(ARGS)

github-setup: $(SETUP) ## Print the gh api calls that protect the release: environments, tag-only policies, rulesets
	@$(PY) -m tools.github_setup $(if $(filter --fleet%,$(ARGS)),,$(GITHUB_TARGET)) $(ARGS)

github-gate: $(SETUP) ## Fail closed before a deploy: refuse a missing or unprotected GitHub environment TARGET-ENV (ARGS="--environment ENV")
	$(PY) -m tools.github_gate $(GITHUB_TARGET) $(ARGS)

secrets: $(SETUP) ## Create or update the Kubernetes Secrets (generated keys are kept, never rotated silently)
	$(PY) -m tools.make_secrets $(STEP_ARGS) $(DRY_FLAG) $(ARGS)

certs: $(SETUP) ## AWS with DNS_ZONE: find or request (DNS-validated) the ACM certificate for BASE_DOMAIN and *.BASE_DOMAIN
	$(PY) -m tools.certs $(STEP_ARGS) $(DRY_FLAG) $(ARGS)

helm-deploy: $(SETUP) ## Preflight, database bucket, install or upgrade the release (images pinned by digest)
	$(PY) -m tools.helm_deploy $(STEP_ARGS) --images $(IMAGES_FILE) $(if $(CHAIN),--revision-file $(REVISION_FILE)) $(DRY_FLAG) $(HELM_DEPLOY_ARGS) $(ARGS)

migrate-database: $(SETUP) ## Once, before the first deploy of this chart over an older one: move the database file on the bucket into the Litestream replica
	$(PY) -m tools.migrate_database $(STEP_ARGS) $(DRY_FLAG) $(ARGS)

dns: $(SETUP) ## Point BASE_DOMAIN, api. and *. at the Ingress in DNS_ZONE (Route53 / Cloud DNS); only records it owns
	$(PY) -m tools.dns $(STEP_ARGS) $(DRY_FLAG) $(ARGS)

smoke: $(SETUP) ## Watch the rollout, check the endpoints and user storage; roll back on failure
	$(PY) -m tools.smoke_test $(STEP_ARGS) --images $(IMAGES_FILE) $(if $(CHAIN),--revision-file $(REVISION_FILE)) $(if $(DRY_FLAG),--no-rollback) $(SMOKE_ARGS) $(ARGS)

deploy: CHAIN := 1
deploy: validate build secrets certs helm-deploy dns smoke ## The whole chain for CLOUD

deploy-aws: ## The whole chain on EKS (validate, build, secrets, certs, deploy, dns, smoke)
	$(MAKE) deploy CLOUD=aws

deploy-gcp: ## The whole chain on GKE
	$(MAKE) deploy CLOUD=gcp

deploy-local: ## The whole chain on a local cluster (kind, k3s, minikube)
	$(MAKE) deploy CLOUD=local

# checkov pins many packages of its own: it gets a virtualenv of its own
.venv-checkov/.installed:
	python3 -m venv .venv-checkov
	.venv-checkov/bin/pip install -q checkov
	@touch $@

setup-checkov: .venv-checkov/.installed ## Install checkov (chart security scan) in its own virtualenv

# The AWS CLI v1 (PyPI's awscli pins its botocore): the tests run the printed AWS set-up with it
.venv-awscli/.installed:
	python3 -m venv .venv-awscli
	.venv-awscli/bin/pip install -q awscli
	@touch $@

setup-awscli: .venv-awscli/.installed ## Install the AWS CLI (the tests run `make cloud-setup CLOUD=aws`'s script) in its own virtualenv

# chartpress, the peer bench-build measures build_push against, pinned, in a virtualenv of its own
CHARTPRESS_VERSION := 2.4.0
.venv-chartpress/.installed:
	python3 -m venv .venv-chartpress
	.venv-chartpress/bin/pip install -q chartpress==$(CHARTPRESS_VERSION)
	@touch $@

setup-chartpress: .venv-chartpress/.installed ## Install chartpress (bench-build's peer) in its own virtualenv

test: setup setup-checkov setup-awscli ## Run the test suite (starts its own real Kubernetes cluster, Docker engine, registry, moto, GCS)
	$(PY) -m pytest --durations=15 $(ARGS)

test-quick: setup ## The inner loop: every test that needs no part of the test bed (no cluster, engine or emulator)
	$(PY) -m pytest -m "not testbed" --durations=15 $(ARGS)

lint: setup ## ruff on the Python code, mypy on tools/
	$(VENV)/bin/ruff check tools tests .github
	$(VENV)/bin/ruff format --check tools tests .github
	$(VENV)/bin/mypy

lint-workflows: setup ## actionlint, zizmor (offline) and yamllint on .github/
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/actionlint  # with the venv's shellcheck on run: scripts
	$(VENV)/bin/zizmor --offline .github
	$(VENV)/bin/yamllint --strict -c .github/yamllint.yml .github

lint-chart: plan ## Render the chart for CLOUD (plan) and helm lint it with those values
	$(VENV)/bin/helm lint helm --strict -f $(PLAN_DIR)/values.yaml

bench: bench-help bench-build bench-smoke bench-deploy ## Every benchmark

bench-help: setup ## How long each tool's --help takes (goal: under 0.3 s)
	$(PY) -m bench.help

bench-build: setup setup-chartpress ## Cold, warm and one-changed build_push runs against a local registry, and unchanged for two platforms
	$(PY) -m bench.build

bench-smoke: setup ## Detection latency of smoke_test for failing pods on the real cluster and the emulator
	$(PY) -m bench.smoke

bench-deploy: setup ## First deploy, no-op redeploy, one image changed on the real cluster: time per step
	$(PY) -m bench.deploy

demo: setup ## From a fresh clone: a real cluster, the stand-in apps, the whole chain (again: a no-op deploy)
	$(PY) -m tools.demo up $(if $(DEMO_FAIL),--fail $(DEMO_FAIL)) $(ARGS)

demo-down: setup ## Stop everything `make demo` started (its cluster or namespace, Docker engine, registry)
	$(PY) -m tools.demo down $(ARGS)

testbed-up: setup ## Start the test bed under .testbed/ (source .testbed/env to use it)
	$(PY) -m tests.testbed up .testbed

testbed-down: ## Stop the test bed under .testbed/
	$(PY) -m tests.testbed down .testbed

clean: ## Remove build outputs (out/)
	rm -rf out
