# channels-stack: the commands a user and CI run. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# apt and pip downloads shared by every test container, kept between runs.
export CHANNELS_STACK_CACHE ?= $(if $(filter 0,$(shell id -u)),/var/cache/channels-stack,$(HOME)/.cache/channels-stack)
export CHANNELS_STACK_IMAGE_12 ?= channels-stack/debian-systemd:12
export CHANNELS_STACK_IMAGE_13 ?= channels-stack/debian-systemd:13
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
DEMO_PORT ?= 8080
DEMO_CONTAINER ?= channels-stack-demo
export DEMO_PORT DEMO_CONTAINER
S ?= default

.PHONY: help venv docker images test-clients lint test test-unit test-app scenario demo demo-destroy clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Controller virtualenv (Ansible, molecule, linters, test clients)

$(VENV)/.installed: requirements.txt apps/chatdemo/requirements.txt apps/chatdemo/requirements-test.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

docker: ## Start a Docker engine if none answers
	@scripts/ensure-docker.sh

images: docker ## Build the Debian 12 and 13 systemd images (skipped when present)
	@scripts/build-image.sh 12 "$(CHANNELS_STACK_IMAGE_12)"
	@scripts/build-image.sh 13 "$(CHANNELS_STACK_IMAGE_13)"

test-clients: ## Chromium, chromedriver and wscat for the faults scenario (installed when missing)
	@scripts/test-clients.sh

lint: venv ## yamllint, ansible-lint (production profile), ruff, role README tables
	yamllint --strict .
	ansible-lint
	ruff check .
	ruff format --check .
	python scripts/role-readme.py --check
	python scripts/role-specs.py --check

test-unit: venv ## The release engine and the other plugins, on this machine
	cd tests/unit && python -m pytest -q

test-app: venv ## The sample apps' own tests (chatdemo, wsgisample)
	cd apps/chatdemo && python -m pytest -q
	cd apps/wsgisample && python -m pytest -q

test: venv images test-clients ## Lint and every test: the apps', make demo and every molecule scenario
	@scripts/test-all.sh

scenario: venv images test-clients ## One molecule scenario: make scenario S=debian13
	molecule test -s $(S)

demo: venv ## The stack in a local systemd container, a smoke check, the URL
	@scripts/demo.sh

.PHONY: demo-tls
demo-tls: venv ## The demo over https with a self-signed certificate, on port 8443
	@DEMO_TLS=1 scripts/demo.sh

.PHONY: bench
bench: venv $(VENV)/.bench-installed ## Converge a stack, measure it, write docs/benchmarks.md (root; not a test)
	@scripts/bench.sh

.PHONY: bench-converge
bench-converge: venv $(VENV)/.bench-installed ## Time site.yml and deploy.yml over SSH as a sudo user (BENCH_MITOGEN=1: also with Mitogen)
	@bench/converge.sh

.PHONY: bench-steps
bench-steps: venv $(VENV)/.bench-installed ## Measure each fan-out and memory change on the default profile, one step at a time
	@bench/steps.sh

$(VENV)/.bench-installed: bench/requirements.txt
	$(VENV)/bin/pip install --quiet -r bench/requirements.txt
	touch $@

.PHONY: vault
vault: venv ## Encrypted random secrets for an inventory: make vault ENV=production
	@scripts/make-vault.sh $(or $(ENV),production)

demo-destroy: ## Remove the demo container
	-docker rm -f $(DEMO_CONTAINER)
	-docker rm -f $(DEMO_CONTAINER)-tls 2>/dev/null

clean: demo-destroy ## Remove the virtualenv and local caches (not the images)
	rm -rf $(VENV) .cache
