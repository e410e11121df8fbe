"""Prometheus metrics of the chat (API processes)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CHAT_CONNECTIONS = Gauge(
    "tr_chat_connections",
    "Open STOMP WebSocket connections across the API processes.",
    multiprocess_mode="livesum",
)
CHAT_POSTS = Counter("tr_chat_posts_total", "Entries stored and published, by event.", ["event"])
CHAT_DELIVERIES = Counter(
    "tr_chat_deliveries_total", "MESSAGE frames queued to local subscribers (live fan-out)."
)
CHAT_ERRORS = Counter(
    "tr_chat_errors_total",
    "ERROR frames sent (each closes a connection), by problem type.",
    ["type"],
)
