# dataplatform.dask — the README's two set-up commands are `make demo` and `make test`.
# Every target bootstraps what it needs (idempotently) and skips what is already there.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath .)
VENV ?= $(ROOT)/.venv
BIN := $(VENV)/bin
CACHE := $(ROOT)/.cache
COLL_ROOT := $(CACHE)/collections
COLL_LINK := $(COLL_ROOT)/ansible_collections/dataplatform/dask
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
export DP_WHEELHOUSE ?= $(CACHE)/wheelhouse
# Molecule scenarios run one after another (2 cores): `make molecule SCENARIOS="cluster"`.
SCENARIOS ?= $(shell scripts/list-scenarios.sh)

.PHONY: help demo demo-down test lint sanity unit integration molecule bench bench-gateway \
        venv host images wheel wheelhouse collection build clean

help:
	@echo "make demo       bring up the whole platform locally and run a real Dask job through it"
	@echo "make test       bootstrap and run every check: lint sanity unit integration molecule"
	@echo "sub-targets:    lint sanity unit integration molecule [SCENARIOS=...] build bench bench-gateway demo-down clean"

## --- bootstrap (idempotent) -------------------------------------------------
venv:
	@scripts/bootstrap-venv.sh

host:
	@scripts/bootstrap-host.sh

# The platform package's wheel, shipped to the hosts by _dask_env (the Dask lock pins it).
wheel: venv
	@scripts/build-wheel.sh

collection: wheel
	@mkdir -p $(dir $(COLL_LINK))
	@[ -L $(COLL_LINK) ] || ln -sfn $(ROOT) $(COLL_LINK)

images: host
	@scripts/with-docker.sh scripts/build-images.sh

wheelhouse: venv
	@scripts/build-wheelhouse.sh

## --- checks -------------------------------------------------------------------
lint: venv collection
	@scripts/lint.sh

sanity: venv
	@scripts/sanity.sh

unit: venv collection
	@scripts/pytest-phase.sh -n 2 tests/unit

integration: venv collection
	@scripts/pytest-phase.sh -n 2 --dist loadfile tests/integration

molecule: venv collection host wheelhouse
	@scripts/with-docker.sh bash -c 'scripts/build-images.sh && scripts/run-molecule.sh $(SCENARIOS)'

test: venv collection host wheelhouse
	@scripts/with-docker.sh scripts/test.sh

build: venv wheel
	@rm -f dataplatform-dask-*.tar.gz
	@$(BIN)/ansible-galaxy collection build --force --output-path $(ROOT) $(ROOT)

bench: venv collection host wheelhouse
	@scripts/with-docker.sh scripts/bench.sh

# The gateway drills on make demo's hosts: kill -9/restart, restart under 30 users, 10-min soak.
bench-gateway: venv collection host wheelhouse
	@scripts/with-docker.sh scripts/bench-gateway.sh

## --- demo ---------------------------------------------------------------------
demo: venv collection host wheelhouse
	@scripts/demo.sh up

demo-down:
	@scripts/demo.sh down

clean:
	rm -rf $(CACHE)/collections $(CACHE)/facts tests/output
