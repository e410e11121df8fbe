# Ticket-Rush developer entry points. Every target bootstraps the venv it needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TR := $(VENV)/bin/ticket-rush
PYTEST_WORKERS ?= 2

.PHONY: help venv lint test test-quick demo dev down status bench-catalog bench-booking clean
.PHONY: chat-js bench-chat

help:
	@echo "make demo          local stack + seeded catalog + scripted tour with a report"
	@echo "make test          the whole test suite against real PostgreSQL/Redis/Tansu"
	@echo "make lint          ruff + mypy"
	@echo "make dev           local stack with the API (ticket-rush stack up --with-app)"
	@echo "make down          stop everything the local stack started"
	@echo "make bench-catalog catalog read benchmark + 1M-row migration timing"
	@echo "make bench-chat    1,000 STOMP subscribers over 2 API processes vs raw Redis pub/sub"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check app tests loadtests
	$(VENV)/bin/mypy app tests loadtests

test: $(STAMP) chat-js
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

test-quick: $(STAMP) chat-js
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

# Chat interop tests drive a real stompjs client (tests/chat/js): Node 20 + the locked packages.
CHAT_JS := tests/chat/js/node_modules/.package-lock.json
$(CHAT_JS): tests/chat/js/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	cd tests/chat/js && npm ci --no-audit --no-fund --loglevel=error
	touch $(CHAT_JS)

chat-js: $(CHAT_JS)

bench-chat: $(STAMP)
	$(TR) stack up
	$(PY) -m loadtests.bench_chat --out reports/chat

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache
