"""Operator settings, read from `TR_OPERATOR_*` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TR_OPERATOR_", env_file=None, extra="ignore")

    api_url: str = "http://ticket-rush-api:8000"
    admin_email: str = ""
    admin_password: SecretStr = SecretStr("")
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "tr"
    kafka_bootstrap: str = "127.0.0.1:9092"
    consumer_deployment: str = "ticket-rush-booking-consumer"
    requests_topic: str = "booking-requests"
    consumer_group: str = "booking-consumer"

    # How often each sale is reconciled (phase, signals, rate, replicas, status).
    reconcile_interval_s: float = Field(default=5.0, gt=0)
    # Backoff while the app is unreachable: base * 2**retry, capped.
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    http_timeout_s: float = Field(default=5.0, gt=0)
    # Control law (shared with the admission worker): the same defaults as the app's.
    target_p95_ms: float = Field(default=800.0, gt=0)
    target_error_ratio: float = Field(default=0.05, gt=0)
    # Additive increase per reconcile step, as a fraction of the sale's max rate.
    rate_increase: float = Field(default=0.05, gt=0, le=1)
    rate_decrease: float = Field(default=0.7, gt=0, lt=1)
