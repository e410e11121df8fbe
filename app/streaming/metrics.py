"""Prometheus metrics of streaming (API processes; nginx-rtmp has none of its own here)."""

from __future__ import annotations

from prometheus_client import Counter

PUBLISHES = Counter(
    "tr_streaming_publishes_total",
    "on_publish answers by result (live, takeover, unknown_key, already_live, relay_refused).",
    ["result"],
)
SESSIONS_ENDED = Counter(
    "tr_streaming_sessions_ended_total",
    "Live sessions ended, by reason (publish_done, stale).",
    ["reason"],
)
UPDATES = Counter(
    "tr_streaming_updates_total",
    "on_update answers for publishers by result (alive, refused: rotated key or ended session).",
    ["result"],
)
HEARTBEATS = Counter(
    "tr_streaming_heartbeats_total",
    "Viewer heartbeats by result (counted, not_live).",
    ["result"],
)
