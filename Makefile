# Real-time Django dashboards kit. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.SHELLFLAGS := -eu -o pipefail -c

VENV ?= .venv
# The compose project: a second, isolated stack only needs another PROJECT, ENV_FILE and port.
PROJECT ?= rtdash
ENV_FILE ?= compose/.env
PYTEST_ARGS ?=
# `make deploy`: the inventory ansible/inventories/$(INVENTORY). No default on purpose: a deploy
# always names its environment. ANSIBLE_ARGS: e.g. --check --diff, --ask-vault-pass.
INVENTORY ?=
ANSIBLE_ARGS ?=
# (verify reads ANSIBLE_ARGS from the environment: any quoting in it reaches it as written.)
export ANSIBLE_ARGS
# `make verify`: the deployment checked, one of PROJECT (compose, the default), INVENTORY or
# K8S_NAMESPACE; ORIGIN (host:port) where the public origin is not the one the target finds.
K8S_NAMESPACE ?=
ORIGIN ?=

# The project deployed: any django-dashboards project directory (manage.py, its requirements
# file); the demo by default. Its image is built on the kit's base image (app/realtime).
APP_DIR ?= app/demo
override APP_DIR := $(abspath $(APP_DIR))
export APP_DIR
export KIT_APP_DOCKERFILE := $(abspath app/Dockerfile)
KIT_IMAGE_TAG ?= latest
export KIT_IMAGE_TAG
APP_REQUIREMENTS ?= requirements.txt
export APP_REQUIREMENTS

BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
# TLS on the public origin when KIT_TLS_DIR names a directory with tls.crt and tls.key.
KIT_TLS_DIR ?=
export KIT_TLS_DIR
COMPOSE_FILES = -f compose/compose.yaml $(if $(KIT_TLS_DIR),-f compose/tls.yaml)
# MONITORING=1 adds the `monitoring` profile (Prometheus, nginx's exporter) to `make up`; so
# does COMPOSE_PROFILES=monitoring in the environment.
MONITORING ?=
COMPOSE_PROFILE = $(if $(MONITORING),--profile monitoring)
# The env file is named explicitly: compose must never fall back to another stack's secrets.
COMPOSE = docker compose $(COMPOSE_FILES) $(COMPOSE_PROFILE) -p $(PROJECT) --env-file $(ENV_FILE)
# Commands that only look at or remove containers work without the secrets file too, and see
# every profile's containers.
COMPOSE_NOSECRETS = DJANGO_SECRET_KEY=unused PUSHPIN_SIG_KEY=unused \
  docker compose $(COMPOSE_FILES) --profile '*' -p $(PROJECT) $$([ -f $(ENV_FILE) ] && echo --env-file $(ENV_FILE))

.PHONY: help venv prepare base-image images up down logs ps status settings test-fast test verify lint deploy bench bench-quick

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements-dev.txt app/realtime/requirements.lock app/realtime/pyproject.toml
	@echo "==> Python: virtualenv $(VENV) with requirements-dev.txt"
	@python3 -c 'import ensurepip, venv' 2>/dev/null || compose/prepare-host.sh --python-only
	@[ -x $(VENV)/bin/pip ] || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q -r requirements-dev.txt
	@$(VENV)/bin/pip install -q -e app/realtime -c app/realtime/requirements.lock
	@touch $@

venv: $(VENV)/.installed ## Create the Python virtualenv (tools, tests)

prepare: ## Install and start what the stack needs: Docker engine, Compose, base image
	@compose/prepare-host.sh

base-image: prepare ## Build the app's base image (the real-time layer, app/realtime); projects build on it
	@[ -f "$(APP_DIR)/manage.py" ] || { echo "APP_DIR=$(APP_DIR) has no manage.py: point it at a Django project" >&2; exit 2; }
	@[ -f "$(APP_DIR)/$(APP_REQUIREMENTS)" ] || { echo "APP_DIR=$(APP_DIR) has no $(APP_REQUIREMENTS) (APP_REQUIREMENTS): the project's own requirements, may be empty" >&2; exit 2; }
	@echo "==> Images: rtdash/app-base:$(KIT_IMAGE_TAG) from app/realtime"
	@docker build -q -t rtdash/app-base:$(KIT_IMAGE_TAG) app/realtime >/dev/null

images: base-image ## Build every image: the app base, the project's app (APP_DIR), Pushpin, nginx
	@echo "==> Images: the app from $(APP_DIR), Pushpin, nginx"
	@$(COMPOSE_NOSECRETS) build --quiet

up: base-image ## Build and start the stack (APP_DIR: your project), wait until healthy, print the URL (MONITORING=1: with Prometheus)
	@compose/generate-secrets.sh $(ENV_FILE)
	@echo "==> Stack: building images and starting services (project $(PROJECT))"
	@$(COMPOSE) up --build --detach --wait --remove-orphans \
	  || { echo "stack did not become healthy: see 'make ps' and 'make logs'" >&2; exit 1; }
	@compose/check-origin "$$($(COMPOSE) port nginx 8080)"
	@echo "==> Dashboard: $(if $(KIT_TLS_DIR),https://$$($(COMPOSE) port nginx 8443),http://$$($(COMPOSE) port nginx 8080))/"
	@if [ -n "$$($(COMPOSE) ps -q prometheus 2>/dev/null)" ]; then \
	  echo "==> Prometheus: http://$$($(COMPOSE) port prometheus 9090)/ (alerts: /alerts)"; fi

down: ## Stop and remove the stack's containers (data volume kept)
	@$(COMPOSE_NOSECRETS) down --remove-orphans

logs: ## Follow the stack's logs
	@$(COMPOSE_NOSECRETS) logs --follow --tail=100

ps: ## Show the stack's services and their health
	@$(COMPOSE_NOSECRETS) ps --all

# Fails when the published origin does not answer, after printing the figures anyway.
status: ## Print whether the published origin answers, streams per Pushpin node, publish rate and failures
	@origin=0; compose/check-origin "$$($(COMPOSE_NOSECRETS) port nginx 8080 2>/dev/null)" || origin=1; \
	  $(COMPOSE_NOSECRETS) exec -T ticker python manage.py opsstatus \
	  || { echo "no running ticker in project $(PROJECT): make up first" >&2; exit 1; }; \
	  exit $$origin

settings: venv ## Render the app's settings (app/realtime/src/realtime/conf.py) into compose, Kubernetes, Ansible and the READMEs
	@$(BIN)/python app/render-settings

# The tests that need no Docker engine and no host of their own (tests/conftest.py marks those
# that use the engine), on both cores.
test-fast: venv ## Unit tests of the app, the real-time package and the config renderers (no Docker, under a minute)
	@$(BIN)/python app/render-settings --check
	@cd app/realtime && $(BIN)/pytest -q -n 2
	@$(BIN)/pytest -q -n 2 -m "not slow and not docker" tests/app tests/config tests/k8s \
		tests/ansible/test_preflight.py tests/ansible/test_argument_specs.py tests/verify $(PYTEST_ARGS)

# Two workers, in the groups tests/conftest.py names (its scheduler for --dist loadgroup).
test: venv ## Run every test (starts real stacks, hosts and a browser)
	@compose/prepare-host.sh --with-browser
	@$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The suite tests/verify/check_*.py (README "Verify a deployment"): changes nothing, publishes
# on probe-* channels only; no cache directory left behind. PYTEST_ARGS: e.g. --junitxml=FILE.
verify: venv ## Check a live deployment end to end: PROJECT=<compose project>, INVENTORY=<env> [ANSIBLE_ARGS=...] or K8S_NAMESPACE=<ns>
	@PYTHONPATH=tests PYTHONDONTWRITEBYTECODE=1 $(BIN)/pytest -p verify.plugin -p no:cacheprovider -o python_files='check_*.py' \
	  -q --project='$(PROJECT)' --inventory='$(INVENTORY)' \
	  --namespace='$(K8S_NAMESPACE)' --origin='$(ORIGIN)' --kubectl='$(KUBECTL)' \
	  tests/verify $(PYTEST_ARGS)

lint: venv ## ruff, yamllint, ansible-lint
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/yamllint --strict .
	@cd ansible && $(BIN)/ansible-lint --profile production

deploy: venv ## Deploy onto Linux hosts: make deploy INVENTORY=<env> [ANSIBLE_ARGS=...]
	@[ -n "$(INVENTORY)" ] && [ -d ansible/inventories/$(INVENTORY) ] || { \
	  echo "make deploy: set INVENTORY to one of: $$(ls ansible/inventories | tr '\n' ' ')" >&2; exit 2; }
	@ANSIBLE_CONFIG=ansible/ansible.cfg $(BIN)/ansible-playbook \
	  -i ansible/inventories/$(INVENTORY) ansible/deploy.yml $(ANSIBLE_ARGS)

# Kubernetes (kustomize overlays in k8s/overlays; the README's "Deploying to Kubernetes").
KUBECTL ?= kubectl
OVERLAY ?= dev
OVERLAYS ?= $(notdir $(patsubst %/kustomization.yaml,%,$(wildcard k8s/overlays/*/kustomization.yaml)))
.PHONY: render deploy-k8s monitoring-k8s

render: ## Print every Kubernetes overlay as kustomize renders it (OVERLAYS=prod: one)
	@for overlay in $(OVERLAYS); do \
	  printf -- '---\n# k8s/overlays/%s\n' "$$overlay"; \
	  $(KUBECTL) kustomize "k8s/overlays/$$overlay"; \
	done

# A Job cannot be changed once created: the last migrate run is removed first, so that this
# apply starts one with the new image (the app and the ticker wait for it).
deploy-k8s: ## Apply a Kubernetes overlay to kubectl's current context (OVERLAY=dev|prod)
	@[ -f k8s/overlays/$(OVERLAY)/kustomization.yaml ] \
	  || { echo "no overlay k8s/overlays/$(OVERLAY): use one of $(OVERLAYS)" >&2; exit 1; }
	@$(KUBECTL) delete -k k8s/overlays/$(OVERLAY) -l app.kubernetes.io/name=migrate --ignore-not-found
	@$(KUBECTL) apply -k k8s/overlays/$(OVERLAY)

# kustomize cannot turn a Prometheus rule file into an object: the component's PrometheusRule is
# generated from monitoring/rules.yml (a test fails when it is stale).
monitoring-k8s: venv ## Regenerate k8s/components/monitoring/prometheusrule.yaml from monitoring/rules.yml
	@$(BIN)/python monitoring/render-prometheusrule > k8s/components/monitoring/prometheusrule.yaml

bench: venv base-image ## Benchmark at scale, side by side (about 20 min; results in tests/bench/results)
	@cd tests && $(BIN)/python -m bench.run

bench-quick: venv base-image ## Benchmark, small sizes (about 3 min)
	@cd tests && $(BIN)/python -m bench.run --quick
