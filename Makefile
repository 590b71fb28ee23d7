# twotower: `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export TWOTOWER_HOME ?= $(CURDIR)/.twotower



.PHONY: install test-deps demo test bench lint clean

install: $(VENV)/.installed

# torch==2.13.0 first: it takes the CPU wheel on disk; pyproject stays open (torch>=2.4).
$(VENV)/.installed: pyproject.toml node_modules/.installed
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The Edge Functions' toolchain from the npm registry, exactly as package-lock.json pins it:
# Deno (its binary comes inside the package), onnxruntime-web, postgres.js, jose.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	@bash scripts/demo.sh

# What the tests drive besides Python, installed when missing: pgbouncer (the pooler tests),
# prometheus (promtool tests the alert rules), chromium (the dashboard's browser tests), and
# Debian's PostgreSQL 15 with the vendored pgvector 0.7.4 (the old-pgvector tests).
PG15 := /usr/lib/postgresql/15/bin
PGVECTOR_OLD := $(CURDIR)/../shared/vendor/pgvector-0.7.4.tar.gz
test-deps:
	@need=""; \
	command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need="$$need pgbouncer"; \
	command -v promtool >/dev/null || need="$$need prometheus"; \
	command -v chromium >/dev/null || need="$$need chromium"; \
	[ -x $(PG15)/postgres ] && [ -f /usr/include/postgresql/15/server/postgres.h ] || \
	  need="$$need postgresql-15 postgresql-server-dev-15"; \
	if [ -n "$$need" ]; then echo "installing$$need (apt-get) for the tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; fi
	@[ -f /usr/share/postgresql/15/extension/vector.control ] || { \
	  echo "building pgvector 0.7.4 for PostgreSQL 15 (old-pgvector tests)"; d=$$(mktemp -d); \
	  tar xzf $(PGVECTOR_OLD) -C $$d && make -s -C $$d/pgvector-0.7.4 PG_CONFIG=$(PG15)/pg_config >/dev/null && \
	  make -s -C $$d/pgvector-0.7.4 install PG_CONFIG=$(PG15)/pg_config >/dev/null; rc=$$?; rm -rf $$d; \
	  [ $$rc -eq 0 ] || { echo "building pgvector 0.7.4 failed" >&2; exit 1; }; }

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
	rm -rf $(VENV) node_modules .twotower .pytest_cache build *.egg-info src/*.egg-info
