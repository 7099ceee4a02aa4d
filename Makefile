# PanDA-WMS: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run stop status test lint venv system-deps clean help

help:
	@echo "make run     - bring up the local grid (PostgreSQL, PKI, server, daemons, pilot factory) and run the demo"
	@echo "               (make run SUBMITTER=slurm: the factory's pilots go through a private single-node Slurm)"
	@echo "make stop    - stop everything make run started"
	@echo "make status  - list the local grid's processes"
	@echo "make test    - install what is needed and run the whole test suite"
	@echo "make lint    - ruff check and format check"

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# apt packages the suite needs when a machine lacks them (CI machines are fresh)
system-deps:
	@bash scripts/system-deps.sh

# make run SUBMITTER=slurm: the factory submits its pilots to a private single-node Slurm (var/slurm)
SUBMITTER ?= local

run: venv system-deps
	PANDA_AUTOPILOT_SUBMITTER=$(SUBMITTER) $(BIN)/python -m scripts.localgrid up
	PANDA_AUTOPILOT_SUBMITTER=$(SUBMITTER) $(BIN)/python -m scripts.localgrid demo
	@echo
	@echo "PanDA server:  https://localhost:25443/server/panda  (mTLS; user proxy var/pki/user.proxy, CA dir var/pki/ca)"
	@echo "               http://localhost:25080/server/panda   (passive reads)"
	@echo "Queuedata:     http://localhost:25080/cache/schedconfig/CLOUDA_T1.all.json"
	@echo "Pilot factory: .venv/bin/panda-autopilot pilots | factories    pilot logs (GTAG): http://localhost:25881/"
	@echo "Logs:          var/log/ (one per service)    Stop everything: make stop"

stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m scripts.localgrid down; fi

status: venv
	$(BIN)/python -m scripts.localgrid status

test: venv system-deps
	$(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean: stop
	rm -rf var/run var/log
