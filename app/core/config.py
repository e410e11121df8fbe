"""Settings for every Ticket-Rush process, read from `TR_*` environment variables."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TR_", env_file=None, extra="ignore")

    env: str = "dev"
    log_level: str = "INFO"
    log_json: bool = True

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/ticket_rush"
    # A steady pool (overflow connections are closed after each burst and reopened on the next).
    db_pool_size: int = Field(default=15, ge=1)
    db_max_overflow: int = Field(default=5, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    db_statement_timeout_ms: int = Field(default=5000, ge=0)
    # Admin bulk work (generating or deleting a 200,000-seat map) fires a trigger per seat.
    db_bulk_statement_timeout_ms: int = Field(default=60000, ge=0)

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=100, ge=1)
    # Prefix of every Redis key this deployment owns, so tests and stacks can share one server.
    redis_prefix: str = "tr"

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Topic name -> partition count; the stack creates them, consumers never exceed partitions.
    kafka_topics: dict[str, int] = Field(
        default_factory=lambda: {
            "booking-requests": 12,
            "booking-results": 6,
            "booking-requests.dlq": 1,
        }
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = Field(default=2, ge=1)
    # The local stack's checkout API (`api-checkout`, 1 worker): the same app, for admitted
    # fans' seat-map, booking and payment calls, so they never queue behind the waiting room's
    # crowd in one event loop (a bulkhead). The Helm chart does not split the API this way yet.
    api_checkout_port: int = 8001
    # Idle keep-alive connections are kept this long: above a load balancer's idle timeout
    # (60 s on the common ones), so the balancer, not the API, closes them; uvicorn's 5 s made
    # clients reconnect over and over between polls.
    api_keep_alive_s: int = Field(default=75, ge=1)

    jwt_secret: SecretStr = SecretStr("dev-only-insecure-secret-change-me-please-0123456789")
    jwt_algorithm: str = "HS256"
    jwt_audience: str = "ticket-rush-api"
    jwt_issuer: str = "ticket-rush"
    access_token_ttl_s: int = Field(default=900, ge=30)
    # Verified access tokens remembered per process (0: verify every request in full).
    auth_token_cache_size: int = Field(default=50_000, ge=0)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    password_min_length: int = Field(default=10, ge=8)

    login_limit_per_account: int = Field(default=10, ge=1)
    login_limit_per_ip: int = Field(default=50, ge=1)
    login_limit_window_s: int = Field(default=300, ge=1)
    signup_limit_per_ip: int = Field(default=20, ge=1)
    # Refresh tokens cannot be guessed, but each attempt costs a locked row: per-IP ceiling.
    refresh_limit_per_ip: int = Field(default=300, ge=1)

    # HTTP hardening (docs/security.md): body size, CORS allow-list, CSP, HSTS.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Browser origins allowed to call the API (JSON list in TR_CORS_ALLOW_ORIGINS); none by default.
    cors_allow_origins: list[str] = Field(default_factory=list)
    cors_max_age_s: int = Field(default=600, ge=0)
    # Content-Security-Policy of every response except /docs and /redoc; None = the built-in
    # policy (self-hosted scripts and styles, HLS from `streaming_hls_base_url`), "" = no header.
    csp: str | None = None
    # Served to browsers over HTTPS (TLS ends at the ingress): send Strict-Transport-Security.
    behind_https: bool = False
    hsts_max_age_s: int = Field(default=31_536_000, ge=0)

    cache_ttl_s: int = Field(default=60, ge=1)
    cache_ttl_jitter: float = Field(default=0.2, ge=0, le=1)
    cache_negative_ttl_s: int = Field(default=10, ge=1)
    cache_lock_ttl_ms: int = Field(default=3000, ge=100)

    # Bookings
    booking_strategy: str = "atomic"
    # Concerts sold through a waiting room default to the Kafka pipeline (strategy F).
    sale_booking_strategy: str = "redis_claim"
    hold_ttl_s: int = Field(default=300, ge=1)
    max_tickets_per_user: int = Field(default=4, ge=1)
    # Hold attempts per fan (and per IP; 0 = off, since carrier NAT puts thousands behind one IP
    # and the admission gate already bounds who reaches booking during a sale) per window.
    booking_limit_per_account: int = Field(default=30, ge=1)
    booking_limit_per_ip: int = Field(default=0, ge=0)
    booking_limit_window_s: int = Field(default=60, ge=1)
    lock_timeout_ms: int = Field(default=2000, ge=1)
    optimistic_max_retries: int = Field(default=8, ge=1)
    # Longer than a pool wait plus a statement, so a normal holder never outlives its lease.
    redis_lock_ttl_ms: int = Field(default=20000, ge=10)
    redis_lock_wait_ms: int = Field(default=3000, ge=0)
    sweeper_interval_s: float = Field(default=5.0, gt=0)
    # A hold whose payment is in flight is not swept until this long after it expired.
    payment_grace_s: int = Field(default=120, ge=0)

    # Payments (the simulator in dev and tests; a real provider behind the same protocol)
    payments_provider: str = "http"
    payments_url: str = "http://127.0.0.1:8100"
    payments_port: int = 8100
    payments_timeout_s: float = Field(default=2.0, gt=0)
    payments_retries: int = Field(default=2, ge=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_recovery_s: float = Field(default=10.0, gt=0)

    run_dir: Path = PROJECT_ROOT / ".run"
    stack_booking_consumers: int = Field(default=2, ge=1)  # members `stack up --with-app` runs
    stack_rtmp_port: int = Field(default=1935, ge=1)  # the local nginx-rtmp: RTMP ingest
    stack_hls_port: int = Field(default=8080, ge=1)  # and HLS over HTTP

    # Strategy F `redis_claim` and the booking consumer (`python -m app.booking_consumer`)
    booking_produce_timeout_s: float = Field(default=5.0, gt=0)
    # Lifetime of the Redis status record a fan polls (the inbox table keeps the outcome).
    booking_request_ttl_s: int = Field(default=86_400, ge=60)
    redis_claim_load_timeout_s: float = Field(default=10.0, gt=0)
    booking_consumer_group: str = "booking-consumer"
    booking_consumer_batch_size: int = Field(default=500, ge=1)
    booking_consumer_poll_timeout_ms: int = Field(default=500, ge=1)
    # How fast the group notices a killed consumer (its partitions wait that long).
    booking_consumer_session_timeout_ms: int = Field(default=10_000, ge=1000)
    booking_consumer_metrics_port: int = Field(default=9102, ge=0)  # 0 = no metrics server
    # How often a consumer reports its lag and latency to the admission controller (Redis).
    booking_consumer_signals_s: float = Field(default=1.0, gt=0)

    # Waiting room (`app/queue`): join/status/push of `POST /sales/{id}/queue` and friends
    # A place in line with no status check (poll, push stream or join) for this long expires.
    queue_grace_s: float = Field(default=120.0, ge=1)
    # Fans may enter a sale's pre-queue this long before it opens.
    queue_prequeue_window_s: int = Field(default=3600, ge=0)
    # Recommended poll interval bounds (the maximum is also capped at a third of the grace).
    queue_poll_min_s: float = Field(default=2.0, gt=0)
    queue_poll_max_s: float = Field(default=30.0, gt=0)
    # Poll advice never assumes a line slower than this (fans/s), so the head keeps checking
    # while admission pauses (app/queue/service.py `_poll_base`).
    queue_poll_head_rate: float = Field(default=10.0, gt=0)
    # Push stream (SSE): one shared Redis call per sale per process per tick.
    queue_push_tick_s: float = Field(default=1.0, gt=0)
    queue_push_heartbeat_s: float = Field(default=15.0, gt=0)
    # Far back in line, small moves are pushed at most this often (see push.worth_sending).
    queue_push_slow_s: float = Field(default=10.0, gt=0)
    queue_push_max_s: float = Field(default=300.0, gt=0)
    # Fixed-window limits per account and per IP (IPs are shared behind carrier NAT: generous).
    queue_limit_window_s: int = Field(default=60, ge=1)
    queue_join_limit_per_account: int = Field(default=20, ge=1)
    queue_join_limit_per_ip: int = Field(default=2000, ge=1)
    queue_status_limit_per_account: int = Field(default=120, ge=1)
    queue_status_limit_per_ip: int = Field(default=30_000, ge=1)
    # How long a closed sale's counters (and its "closed" answer) stay in Redis.
    queue_closed_retention_s: int = Field(default=86_400, ge=60)

    # Admission worker (`python -m app.admission`)
    admission_token_ttl_s: int = Field(default=600, ge=10)
    # An admitted fan who does not collect the token (status check, push stream or booking)
    # within this long loses the admission, so the slot goes to someone who is there. 0: off.
    admission_arrival_s: float = Field(default=60.0, ge=0)
    # An admitted fan who has the token but makes no booking attempt with it for this long loses
    # the admission (Cloudflare Waiting Room's session_duration: a fan who closed the tab after
    # collecting it would otherwise hold a slot, and at the end of a sell-out the last seats'
    # line, until the token runs out). 0: off.
    admission_idle_s: float = Field(default=300.0, ge=0)
    admission_tick_s: float = Field(default=0.2, gt=0)
    admission_lease_ttl_ms: int = Field(default=5000, ge=200)
    admission_sync_s: float = Field(default=2.0, gt=0)
    admission_stock_check_s: float = Field(default=2.0, gt=0)
    # Admitted-and-active fans stay below this many times the tickets still free, or free +
    # headroom when that is more: at the end of a sell-out a couple of admitted fans who never
    # show up would otherwise hold the last seats' whole line until their admission runs out.
    admission_oversubscription: float = Field(default=1.5, gt=0)
    admission_stock_headroom: int = Field(default=20, ge=0)
    admission_burst_s: float = Field(default=1.0, gt=0)
    admission_rate_ewma_tau_s: float = Field(default=10.0, gt=0)
    admission_seal_chunk: int = Field(default=10_000, ge=1)
    admission_metrics_port: int = Field(default=9103, ge=0)  # 0 = no metrics server
    # Local backpressure (AIMD, app/queue/control.py) on signals under `<prefix>:{signals}:*`.
    admission_backpressure: bool = True
    admission_control_interval_s: float = Field(default=1.0, gt=0)
    admission_target_lag: float = Field(default=5000, gt=0)
    admission_target_p95_ms: float = Field(default=800.0, gt=0)
    admission_target_error_ratio: float = Field(default=0.05, gt=0)
    # Additive increase per control interval, as a fraction of the sale's max rate.
    admission_rate_increase: float = Field(default=0.05, gt=0, le=1)
    admission_rate_decrease: float = Field(default=0.7, gt=0, lt=1)

    # Streaming (`app/streaming`): channels, nginx-rtmp callbacks under /rtmp/, HLS playback
    # Shared with nginx-rtmp, which sends it as `?secret=` on every callback URL.
    streaming_callback_secret: SecretStr = SecretStr("dev-only-rtmp-callback-secret-change-me")
    # Players fetch `<base>/<channel public name>/index.m3u8` from the nginx serving HLS.
    streaming_hls_base_url: str = "http://127.0.0.1:8080/hls"
    # What encoders publish to ("Server" in OBS; the stream key goes after it).
    streaming_ingest_url: str = "rtmp://127.0.0.1:1935/live"
    # nginx-rtmp `notify_update_timeout`: a live session silent for 3 intervals is stale.
    streaming_update_interval_s: int = Field(default=10, ge=1)
    # A fan counts as a viewer while their player sent a heartbeat within this window.
    streaming_viewer_window_s: int = Field(default=30, ge=3)
    streaming_announce_timeout_s: float = Field(default=2.0, gt=0)

    # Chat (`app/chat`): STOMP 1.2 over WebSocket at /ws/stomp, fan-out and history in Redis
    chat_max_frame_bytes: int = Field(default=65_536, ge=1024)
    chat_max_message_bytes: int = Field(default=2000, ge=1)
    chat_max_subscriptions: int = Field(default=20, ge=1)
    # What the server offers in CONNECTED `heart-beat:sx,sy` (0 = none); the peer's wish and
    # this are negotiated per the spec, and a silent peer is dropped after twice the interval.
    chat_heartbeat_send_ms: int = Field(default=10_000, ge=0)
    chat_heartbeat_receive_ms: int = Field(default=10_000, ge=0)
    # Per-room Redis Stream: roughly this many kept, this many replayed on SUBSCRIBE.
    chat_history_len: int = Field(default=500, ge=1)
    chat_history_on_subscribe: int = Field(default=20, ge=0)
    # Per-user fixed-window SEND limit across rooms (rooms may add a slow mode on top).
    chat_send_limit: int = Field(default=20, ge=1)
    chat_send_window_s: int = Field(default=10, ge=1)
    # A process refreshes its presence entries every third of this; a dead one's expire.
    chat_presence_ttl_s: float = Field(default=30.0, gt=0)
    # Outgoing frames queued for one slow client before it is disconnected.
    chat_outbox_frames: int = Field(default=1000, ge=10)
    # A subscriber's room check (catalog lookup) is cached in-process this long.
    chat_room_cache_s: float = Field(default=30.0, ge=0)

    @field_validator("cors_allow_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        # An allow-list, not a pattern: no "*", no paths, exactly what browsers send as Origin.
        for origin in origins:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"not an exact origin (scheme://host[:port]): {origin!r}")
        return origins


@lru_cache
def get_settings() -> Settings:
    return Settings()
