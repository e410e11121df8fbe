"""Prometheus metrics of the waiting room (API processes) and the admission worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

QUEUE_JOINS = Counter(
    "tr_queue_joins_total",
    "Queue joins by result (new, existing, closed, too_early).",
    ["result"],
)
QUEUE_STATUS = Counter(
    "tr_queue_status_total",
    "Status answers by state (pre_queue, waiting, admitted, expired, sold_out, closed).",
    ["state"],
)
PUSH_SUBSCRIBERS = Gauge(
    "tr_queue_push_subscribers",
    "Open push streams (SSE) across the API processes.",
    multiprocess_mode="livesum",
)
PUSH_TICKS = Counter(
    "tr_queue_push_ticks_total",
    "Shared per-sale status calls made for push subscribers (one per sale, process and tick).",
)

# The sale's own counters in Redis (app/queue/store.py `stats`), whichever process moved them.
FAN_EVENTS = (
    "joined",
    "abandoned",
    "admission_expired",
    "admission_unclaimed",
    "admission_idle",
    "left",
    "completed",
)
QUEUE_FANS = Counter(
    "tr_queue_fans_total",
    "Fans per sale by event (joined, abandoned, admission_expired, admission_unclaimed, "
    "admission_idle, left, completed), from the sale's Redis counters, exported by the "
    "admission worker holding the sale's lease.",
    ["sale", "event"],
)
ADMITTED = Counter(
    "tr_admission_admitted_total", "Fans admitted by the admission worker, per sale.", ["sale"]
)
ADMISSION_RATE = Gauge(
    "tr_admission_rate",
    "Admission rate in force (fans/s), per sale led by this worker.",
    ["sale"],
    multiprocess_mode="livemax",
)
QUEUE_LENGTH = Gauge(
    "tr_admission_queue_length",
    "Fans waiting (and in the pre-queue), per sale led by this worker.",
    ["sale", "kind"],
    multiprocess_mode="livemax",
)
ADMITTED_ACTIVE = Gauge(
    "tr_admission_active",
    "Admitted fans currently shopping, per sale led by this worker.",
    ["sale"],
    multiprocess_mode="livemax",
)
MAX_ACTIVE = Gauge(
    "tr_admission_max_active",
    "Most admitted fans shopping at once (the sale's max_active), per sale led by this worker.",
    ["sale"],
    multiprocess_mode="livemax",
)
LEADER = Gauge(
    "tr_admission_leader",
    "1 while this worker holds the sale's lease.",
    ["sale"],
    multiprocess_mode="livemax",
)
CONTROL_DECISIONS = Counter(
    "tr_admission_control_total",
    "Backpressure controller decisions by action (increase, hold, decrease).",
    ["action"],
)
TICK_SECONDS = Histogram(
    "tr_admission_tick_seconds",
    "Duration of one admission worker pass over all its sales.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
