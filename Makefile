# Ticket-Rush developer entry points. Every target bootstraps the venv it needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TR := $(VENV)/bin/ticket-rush
PYTEST_WORKERS ?= 2

.PHONY: help venv lint test test-quick demo dev down status bench-catalog bench-booking bench-spike clean k8s-demo
.PHONY: kind-up kind-deploy kind-loadtest kind-down
.PHONY: chat-js bench-chat
.PHONY: bench-queue-redis
.PHONY: web-vendor
.PHONY: chaos

help:
	@echo "make demo          a full ticket rush on the local stack (FANS=50000 SEATS=5000) + report"
	@echo "make test          the whole test suite against real PostgreSQL/Redis/Tansu"
	@echo "make lint          ruff + mypy"
	@echo "make dev           local stack with the API (ticket-rush stack up --with-app)"
	@echo "make down          stop everything the local stack started"
	@echo "make bench-catalog catalog read benchmark + 1M-row migration timing"
	@echo "make bench-spike   queue join/status vs no-op, consumer vs pgbench, time to sell out"
	@echo "make k8s-demo      Kubernetes API emulator + kopf operator + local stack: a ConcertSale's phases"
	@echo "make kind-up kind-deploy kind-loadtest   the platform on a local kind cluster (Docker)"
	@echo "make web-vendor    browser libraries (hls.js, stompjs) for the web app, from web/package-lock.json"
	@echo "make bench-chat    1,000 STOMP subscribers over 2 API processes vs raw Redis pub/sub"
	@echo "make bench-queue-redis  Redis CPU per queue join/status vs SET (docs/capacity.md)"
	@echo "make chaos         rushes under faults (consumer kill, PG/Redis/payments/broker down) + report"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check app tests loadtests operator infra
	$(VENV)/bin/mypy app tests loadtests operator/ticket_rush_operator infra

test: $(STAMP) chat-js web-vendor
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

test-quick: $(STAMP) chat-js
	$(PY) -m pytest -m "not slow" -q

dev: $(STAMP) web-vendor
	$(TR) stack up --with-app

down: $(STAMP)
	$(TR) stack down

status: $(STAMP)
	$(TR) stack status

# The demo's fans all come from 127.0.0.1, so the per-IP limits are lifted; holds, admissions and
# abandoned places time out fast enough to be seen within the run.
FANS ?= 50000
SEATS ?= 5000
DEMO_ENV := TR_QUEUE_JOIN_LIMIT_PER_IP=10000000 TR_QUEUE_STATUS_LIMIT_PER_IP=100000000 \
	TR_HOLD_TTL_S=30 TR_ADMISSION_TOKEN_TTL_S=180 TR_ADMISSION_IDLE_S=30 TR_QUEUE_GRACE_S=180 \
	TR_QUEUE_POLL_MAX_S=60 TR_QUEUE_PUSH_TICK_S=2 \
	TR_PAYMENTS_SIM_DECLINE_RATE=0.08 TR_PAYMENTS_SIM_LATENCY_MS=120 TR_PAYMENTS_SIM_JITTER_MS=80

demo: $(STAMP)
	$(TR) stack down
	$(DEMO_ENV) $(TR) stack up --with-app
	$(PY) -m loadtests.demo --fans $(FANS) --seats $(SEATS) --out reports/demo

bench-catalog: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(TR) stack up
	$(PY) -m loadtests.bench_catalog --out reports/catalog
	$(PY) loadtests/bench_migration.py --rows 1000000 --out reports/catalog

bench-spike: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(TR) stack down
	$(DEMO_ENV) $(TR) stack up --with-app
	$(PY) -m loadtests.bench_spike --out reports/spike $(SPIKE_ARGS)

# The operator's control plane on this machine (no cluster): see loadtests/k8s_demo.py.
k8s-demo: $(STAMP)
	$(TR) stack up --with-app
	$(TR) seed
	$(PY) -m loadtests.k8s_demo

# Redis cost of one join / status call against SET on the same server (docs/capacity.md).
bench-queue-redis: $(STAMP)
	$(PY) -m loadtests.bench_queue_redis --out reports/capacity

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

# Each scenario runs its own stack (free ports, .run/chaos/<scenario>, private redis-server),
# so `make dev` / `make demo` may keep running. CHAOS_ARGS e.g. --scenario redis-restart.
chaos: $(STAMP)
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
	$(PY) -m loadtests.chaos --out reports/resilience $(CHAOS_ARGS)

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache

# The web app (app/web) loads hls.js and stompjs from /static/vendor: the locked npm packages,
# copied there (gitignored) so the API serves them same-origin with the pages.
WEB_VENDOR_DIR := app/web/static/vendor
# The copied file itself is the target: no stamp file inside the package.
WEB_VENDOR := $(WEB_VENDOR_DIR)/hls.light.min.mjs
$(WEB_VENDOR): web/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(WEB_VENDOR_DIR)
	cp web/node_modules/hls.js/dist/hls.light.min.mjs web/node_modules/@stomp/stompjs/bundles/stomp.umd.min.js $(WEB_VENDOR_DIR)/

web-vendor: $(WEB_VENDOR)
