# twotower: `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export TWOTOWER_HOME ?= $(CURDIR)/.twotower



.PHONY: install test-deps demo test bench lint clean

install: $(VENV)/.installed

# torch==2.13.0 first: it takes the CPU wheel on disk; pyproject stays open (torch>=2.4).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: install
	@bash scripts/demo.sh

# Debian packages the tests drive: pgbouncer (the connection-pooler tests). Installed when missing.
test-deps:
	@command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || { \
	  echo "installing pgbouncer (apt-get) for the pooler tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }

test: install test-deps
	@$(BIN)/python -m pytest tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

bench: install
	$(BIN)/python bench/synth_load.py --quick
	$(BIN)/python bench/quality.py

lint: install
	$(BIN)/ruff check src tests bench

clean:
	-$(BIN)/twotower db stop 2>/dev/null
	rm -rf $(VENV) .twotower .pytest_cache build *.egg-info src/*.egg-info
