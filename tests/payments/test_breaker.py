"""The circuit breaker: opens on an outage, fails fast without calling the provider, half-opens
after the recovery time, closes on success; shared by every worker through Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from httpx import ASGITransport
from prometheus_client import REGISTRY

from app.core.config import Settings
from app.core.problems import install_problem_handlers
from app.devstack.broker import free_port
from app.payments import ChargeStatus, HttpPaymentProvider, PaymentUnavailable
from tests.fixtures.payments import Sim
from tests.payments.conftest import RECOVERY_S, THRESHOLD, TIMEOUT_S, new_key

BREAKER = "payments"
# Failing fast means no network round trip and no timeout: a few Redis reads at most.
FAST_S = TIMEOUT_S / 3


def transitions(to: str) -> float:
    labels = {"breaker": BREAKER, "to": to}
    return REGISTRY.get_sample_value("tr_circuit_breaker_transitions_total", labels) or 0.0


def breaker_state() -> float | None:
    return REGISTRY.get_sample_value("tr_circuit_breaker_state", {"breaker": BREAKER})


async def pay(provider: HttpPaymentProvider) -> None:
    await provider.charge(idempotency_key=new_key(), amount_minor=2500, currency="EUR")


async def open_breaker(sim: Sim, provider: HttpPaymentProvider) -> None:
    """Start an outage and fail one charge: its THRESHOLD attempts open the breaker."""
    await sim.control(outage=True)
    before = await sim.stats()
    with pytest.raises(PaymentUnavailable):
        await pay(provider)
    assert (await sim.stats())["requests"] - before["requests"] == THRESHOLD
    assert breaker_state() == 2


async def assert_fails_fast(sim: Sim, provider: HttpPaymentProvider) -> PaymentUnavailable:
    before = await sim.stats()
    started = time.monotonic()
    with pytest.raises(PaymentUnavailable) as caught:
        await pay(provider)
    assert time.monotonic() - started < FAST_S
    assert await sim.stats() == before  # the provider never saw the call
    assert caught.value.outcome == "breaker_open"
    return caught.value


async def test_outage_opens_the_breaker_and_calls_fail_fast(
    sim: Sim, provider: HttpPaymentProvider
):
    opened = transitions("open")
    await open_breaker(sim, provider)
    assert transitions("open") == opened + 1

    for _ in range(3):
        exc = await assert_fails_fast(sim, provider)
        assert exc.status == 503
        assert exc.type_uri().endswith("/payment-unavailable")
        assert 1 <= int(exc.headers["Retry-After"]) <= RECOVERY_S + 1


async def test_breaker_half_opens_after_recovery_and_closes_on_success(
    sim: Sim, provider: HttpPaymentProvider
):
    counts = {to: transitions(to) for to in ("open", "half_open", "closed")}
    await open_breaker(sim, provider)
    await sim.control(outage=False)
    await assert_fails_fast(sim, provider)  # still open until the recovery time has passed

    await asyncio.sleep(RECOVERY_S + 0.1)
    before = await sim.stats()
    await pay(provider)

    assert (await sim.stats())["charges_created"] - before["charges_created"] == 1
    assert {to: transitions(to) - n for to, n in counts.items()} == {
        "open": 1,
        "half_open": 1,
        "closed": 1,
    }
    assert breaker_state() == 0
    await pay(provider)


async def test_failed_probe_reopens_the_breaker(sim: Sim, provider: HttpPaymentProvider):
    await open_breaker(sim, provider)
    opened = transitions("open")
    await asyncio.sleep(RECOVERY_S + 0.1)
    before = await sim.stats()

    with pytest.raises(PaymentUnavailable) as caught:
        await pay(provider)

    # One probe reached the provider, failed, and reopened the breaker; the retry did not go out.
    assert (await sim.stats())["requests"] - before["requests"] == 1
    assert caught.value.outcome == "breaker_open"
    assert transitions("open") == opened + 1
    await assert_fails_fast(sim, provider)


async def test_hanging_provider_opens_the_breaker_through_timeouts(
    sim: Sim, provider: HttpPaymentProvider
):
    await sim.control(outage=True, outage_mode="hang")
    started = time.monotonic()
    with pytest.raises(PaymentUnavailable):
        await pay(provider)
    assert time.monotonic() - started >= THRESHOLD * TIMEOUT_S

    await assert_fails_fast(sim, provider)


async def test_breaker_state_is_shared_by_every_worker(
    sim: Sim, provider: HttpPaymentProvider, payment_settings: Settings
):
    # Another API worker: its own client and Redis connection, the same breaker key.
    other_worker = HttpPaymentProvider(payment_settings)
    try:
        await open_breaker(sim, provider)
        await assert_fails_fast(sim, other_worker)
    finally:
        await other_worker.aclose()


async def test_success_resets_the_failure_count(sim: Sim, provider: HttpPaymentProvider):
    # THRESHOLD - 1 failed attempts, a success, again: never THRESHOLD in a row, stays closed.
    for _ in range(2):
        await sim.control(failure_rate=1, failure_point="before", first_attempt_only=True)
        for _ in range(THRESHOLD - 1):
            await pay(provider)  # the first attempt fails, its retry succeeds
    assert breaker_state() == 0


async def test_unreachable_breaker_store_does_not_block_payments(
    sim: Sim, payment_settings: Settings
):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    provider = HttpPaymentProvider(payment_settings.model_copy(update={"redis_url": dead_redis}))
    try:
        charge = await provider.charge(idempotency_key=new_key(), amount_minor=1, currency="EUR")
    finally:
        await provider.aclose()
    assert charge.status is ChargeStatus.succeeded


@pytest.fixture
async def pay_api(provider: HttpPaymentProvider) -> AsyncIterator[httpx.AsyncClient]:
    """A minimal API route that pays through the provider, with the app's problem handlers."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/pay")
    async def pay_route() -> dict[str, str]:
        charge = await provider.charge(idempotency_key=new_key(), amount_minor=1, currency="EUR")
        return {"charge_id": charge.charge_id}

    transport = ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_open_breaker_is_a_503_problem_with_retry_after(
    sim: Sim, provider: HttpPaymentProvider, pay_api: httpx.AsyncClient
):
    await open_breaker(sim, provider)

    r = await pay_api.post("/pay")

    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= RECOVERY_S + 1
    problem = r.json()
    assert problem["type"] == "https://ticketrush.io/problems/payment-unavailable"
    assert problem["retry_after"] == int(r.headers["retry-after"])
