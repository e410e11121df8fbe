# Ticket-Rush developer entry points. Every target bootstraps the venv it needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TR := $(VENV)/bin/ticket-rush
PYTEST_WORKERS ?= 2

.PHONY: help venv lint test test-quick demo dev down status bench-catalog bench-booking clean
.PHONY: kind-up kind-deploy kind-loadtest kind-down

help:
	@echo "make demo          local stack + seeded catalog + scripted tour with a report"
	@echo "make test          the whole test suite against real PostgreSQL/Redis/Tansu"
	@echo "make lint          ruff + mypy"
	@echo "make dev           local stack with the API (ticket-rush stack up --with-app)"
	@echo "make down          stop everything the local stack started"
	@echo "make bench-catalog catalog read benchmark + 1M-row migration timing"
	@echo "make kind-up kind-deploy kind-loadtest   the platform on a local kind cluster (Docker)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check app tests loadtests infra
	$(VENV)/bin/mypy app tests loadtests infra

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

test-quick: $(STAMP)
	$(PY) -m pytest -m "not slow" -q

dev: $(STAMP)
	$(TR) stack up --with-app

down: $(STAMP)
	$(TR) stack down

status: $(STAMP)
	$(TR) stack status

demo: $(STAMP)
	$(TR) stack up --with-app
	$(TR) seed
	$(PY) -m loadtests.demo_tour --out reports/demo

bench-catalog: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(TR) stack up
	$(PY) -m loadtests.bench_catalog --out reports/catalog
	$(PY) loadtests/bench_migration.py --rows 1000000 --out reports/catalog

bench-booking: $(STAMP)
	$(TR) stack up
	$(PY) -m loadtests.bench_booking --out reports/booking

# Kubernetes on kind (needs docker, kind, kubectl and the Pulumi CLI; none exists on the dev
# machines, so these fail early there). USERS / SPAWN_RATE / DURATION tune kind-loadtest.
kind-up:
	infra/kind/kind.sh up

kind-deploy:
	infra/kind/kind.sh deploy

kind-loadtest: $(STAMP)
	infra/kind/kind.sh loadtest

kind-down:
	infra/kind/kind.sh down

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache
