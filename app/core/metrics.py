"""Prometheus metrics shared by all processes (multiprocess-safe under several workers)."""

from __future__ import annotations

import glob
import os
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

HTTP_REQUESTS = Counter(
    "tr_http_requests_total",
    "HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "tr_http_request_duration_seconds",
    "HTTP request latency by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CACHE_REQUESTS = Counter(
    "tr_cache_requests_total",
    "Catalog cache lookups by cache name and result (hit, miss, stale, negative_hit).",
    ["cache", "result"],
)
CACHE_LOADS = Counter(
    "tr_cache_loads_total",
    "Cache loads that went to the database, by cache name.",
    ["cache"],
)
AUTH_EVENTS = Counter(
    "tr_auth_events_total",
    "Authentication events (login_ok, login_failed, refresh, refresh_reuse, logout).",
    ["event"],
)


KAFKA_PRODUCE_LATENCY = Histogram(
    "tr_kafka_produce_duration_seconds",
    "From send to the broker's acknowledgement (acks=all), per message, by topic.",
    ["topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
DB_POOL_IN_USE = Gauge(
    "tr_db_pool_connections_in_use",
    "PostgreSQL connections checked out of this process's SQLAlchemy pool.",
    multiprocess_mode="livesum",
)
DB_POOL_CAPACITY = Gauge(
    "tr_db_pool_connections_max",
    "Most connections the pool may open (pool_size + max_overflow).",
    multiprocess_mode="livesum",
)

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def _forget_dead_workers(directory: str) -> None:
    # uvicorn replaces a crashed worker without telling prometheus-client, so the dead pid's
    # live gauges (open streams, pool use) would be summed forever: drop them at scrape time.
    for path in glob.glob(os.path.join(directory, "gauge_live*.db")):
        found = _LIVE_GAUGE_FILE.search(path)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            continue


def render_metrics() -> tuple[bytes, str]:
    """Exposition for /metrics; aggregates all workers when PROMETHEUS_MULTIPROC_DIR is set."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        _forget_dead_workers(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST


BOOKING_OUTCOMES = Counter(
    "tr_booking_outcomes_total",
    "Hold attempts by strategy, kind (seats, general_admission) and outcome.",
    ["strategy", "kind", "outcome"],
)
BOOKING_LATENCY = Histogram(
    "tr_booking_hold_duration_seconds",
    "Time to claim a hold by strategy (successes and conflicts).",
    ["strategy"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BOOKING_RETRIES = Counter(
    "tr_booking_retries_total",
    "Optimistic retries and lock re-polls by strategy.",
    ["strategy"],
)
LOCK_WAIT = Histogram(
    "tr_booking_lock_wait_seconds",
    "Time spent acquiring strategy locks (inprocess, redis_lock).",
    ["strategy"],
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5),
)
HOLDS_EXPIRED = Counter(
    "tr_booking_holds_expired_total",
    "Holds released because they expired (sweeper or lazily).",
    ["path"],
)

# Series that exist before their first event, so dashboards and alerts read 0, not "no data".
for _strategy in ("inprocess", "redis_lock"):
    LOCK_WAIT.labels(_strategy)
for _strategy in ("optimistic", "redis_lock"):
    BOOKING_RETRIES.labels(_strategy)
for _path in ("lazy", "sweeper"):
    HOLDS_EXPIRED.labels(_path)
for _event in ("login_ok", "login_failed", "refresh", "refresh_reuse", "logout"):
    AUTH_EVENTS.labels(_event)
