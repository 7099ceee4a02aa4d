# PanDA-WMS: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run stop status test lint venv system-deps clean help

help:
	@echo "make run     - bring up the local grid (PostgreSQL, PKI, server, daemons) and run the demo with our pilots"
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

run: venv system-deps
	$(BIN)/python -m scripts.localgrid up
	$(BIN)/python -m scripts.localgrid demo
	@echo
	@echo "PanDA server:  https://localhost:25443/server/panda  (mTLS; user proxy var/pki/user.proxy, CA dir var/pki/ca)"
	@echo "               http://localhost:25080/server/panda   (passive reads)"
	@echo "Queuedata:     http://localhost:25080/cache/schedconfig/CLOUDA_T1.all.json"
	@echo "Pilots:        X509_USER_PROXY=var/pki/pilot.proxy .venv/bin/panda-pilot -q <queue> --url https://localhost:25443 --ca-dir var/pki/ca -a var/pilots"
	@echo "Logs:          var/log/ (pilot-<queue>.log per demo pilot)    Stop everything: make stop"

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
