"""The real payment simulator process, its knobs reset per test, and fast client settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis

from app.core.config import Settings
from app.payments import HttpPaymentProvider
from tests.fixtures.payments import Sim

# As in tests/conftest.py; not imported from there so these tests need none of the app's wiring.
REDIS_URL = os.environ.get("TR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]

TIMEOUT_S = 0.3
RETRIES = 2
THRESHOLD = 3
RECOVERY_S = 1.0


@pytest.fixture
def payment_settings(sim: Sim) -> Iterator[Settings]:
    """Small timeout and recovery, and a Redis prefix of its own (a fresh breaker per test)."""
    prefix = f"trtest-pay-{uuid.uuid4().hex[:10]}"
    yield Settings(
        payments_url=sim.url,
        payments_timeout_s=TIMEOUT_S,
        payments_retries=RETRIES,
        breaker_failure_threshold=THRESHOLD,
        breaker_recovery_s=RECOVERY_S,
        redis_url=REDIS_URL,
        redis_prefix=prefix,
    )
    client = sync_redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()


@pytest.fixture
async def provider(payment_settings: Settings) -> AsyncIterator[HttpPaymentProvider]:
    provider = HttpPaymentProvider(payment_settings)
    yield provider
    await provider.aclose()


def new_key() -> str:
    return f"pay-{uuid.uuid4().hex}"
