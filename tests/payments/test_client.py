"""HttpPaymentProvider against the real simulator: retries under one key never charge twice."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from app.core.config import Settings
from app.payments import (
    ChargeStatus,
    HttpPaymentProvider,
    PaymentConflict,
    PaymentDeclined,
    PaymentNotFound,
    PaymentUnavailable,
    create_provider,
)
from tests.fixtures.payments import Sim
from tests.payments.conftest import TIMEOUT_S, new_key


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


async def test_charge_twice_with_one_key_charges_once(sim: Sim, provider: HttpPaymentProvider):
    key = new_key()
    before = await sim.stats()
    succeeded = metric("tr_payment_requests_total", operation="charge", outcome="succeeded")

    first = await provider.charge(idempotency_key=key, amount_minor=4200, currency="EUR")
    second = await provider.charge(idempotency_key=key, amount_minor=4200, currency="EUR")

    assert first == second
    assert first.status is ChargeStatus.succeeded
    assert (first.amount_minor, first.currency) == (4200, "EUR")
    assert delta(await sim.stats(), before) == {"requests": 2, "charges_created": 1, "replays": 1}
    assert metric("tr_payment_requests_total", operation="charge", outcome="succeeded") == (
        succeeded + 2
    )
    assert metric("tr_payment_duration_seconds_count", operation="charge") >= 2


async def test_slow_first_attempt_is_retried_with_the_same_key(
    sim: Sim, provider: HttpPaymentProvider
):
    # The first attempt outlives the client's timeout but is still recorded, later, by the
    # provider; the retry must not create a second charge.
    await sim.control(latency_ms=TIMEOUT_S * 1000 * 2, first_attempt_only=True)
    key = new_key()
    before = await sim.stats()
    retries = metric("tr_payment_retries_total", operation="charge")

    started = time.monotonic()
    charge = await provider.charge(idempotency_key=key, amount_minor=900, currency="EUR")
    elapsed = time.monotonic() - started

    assert charge.status is ChargeStatus.succeeded
    assert TIMEOUT_S <= elapsed < TIMEOUT_S * 2
    assert metric("tr_payment_retries_total", operation="charge") == retries + 1
    await asyncio.sleep(TIMEOUT_S * 1.5)  # let the slow first attempt finish on the provider
    assert delta(await sim.stats(), before) == {"requests": 2, "charges_created": 1, "replays": 1}
    assert (await sim.charge(key)).json()["charge_id"] == charge.charge_id


@pytest.mark.parametrize(
    ("point", "replays"), [("after", {"replays": 1}), ("before", {})], ids=["after", "before"]
)
async def test_injected_5xx_is_retried_without_double_charge(
    sim: Sim, provider: HttpPaymentProvider, point: str, replays: dict[str, int]
):
    await sim.control(failure_rate=1, failure_point=point, first_attempt_only=True)
    key = new_key()
    before = await sim.stats()

    charge = await provider.charge(idempotency_key=key, amount_minor=1234, currency="USD")

    assert charge.status is ChargeStatus.succeeded
    assert delta(await sim.stats(), before) == {
        "requests": 2,
        "charges_created": 1,
        "failures_injected": 1,
        **replays,
    }


async def test_decline_is_not_retried(sim: Sim, provider: HttpPaymentProvider):
    await sim.control(decline_rate=1)
    key = new_key()
    before = await sim.stats()
    retries = metric("tr_payment_retries_total", operation="charge")
    declined = metric("tr_payment_requests_total", operation="charge", outcome="declined")

    with pytest.raises(PaymentDeclined) as caught:
        await provider.charge(idempotency_key=key, amount_minor=500, currency="EUR")

    assert caught.value.status == 402
    assert caught.value.type_uri().endswith("/payment-declined")
    assert caught.value.charge_id == (await sim.charge(key)).json()["charge_id"]
    assert delta(await sim.stats(), before) == {"requests": 1, "charges_created": 1, "declines": 1}
    assert metric("tr_payment_retries_total", operation="charge") == retries
    assert (
        metric("tr_payment_requests_total", operation="charge", outcome="declined") == declined + 1
    )
    # The key stays declined: a new attempt to pay needs a new key.
    await sim.control(decline_rate=0)
    with pytest.raises(PaymentDeclined):
        await provider.charge(idempotency_key=key, amount_minor=500, currency="EUR")


async def test_key_reused_with_another_amount_is_a_conflict(
    sim: Sim, provider: HttpPaymentProvider
):
    key = new_key()
    await provider.charge(idempotency_key=key, amount_minor=700, currency="EUR")

    with pytest.raises(PaymentConflict) as caught:
        await provider.charge(idempotency_key=key, amount_minor=701, currency="EUR")

    assert caught.value.status == 409
    assert (await sim.charge(key)).json()["amount_minor"] == 700


async def test_refund(sim: Sim, provider: HttpPaymentProvider):
    key = new_key()
    await provider.charge(idempotency_key=key, amount_minor=700, currency="EUR")
    before = await sim.stats()

    await provider.refund(idempotency_key=key)
    await provider.refund(idempotency_key=key)

    assert delta(await sim.stats(), before) == {"requests": 2, "refunds": 1}
    assert (await sim.charge(key)).json()["status"] == "refunded"
    with pytest.raises(PaymentConflict):
        await provider.charge(idempotency_key=key, amount_minor=700, currency="EUR")
    with pytest.raises(PaymentNotFound):
        await provider.refund(idempotency_key=new_key())


async def test_refund_after_recording_failure_refunds_once(sim: Sim, provider: HttpPaymentProvider):
    key = new_key()
    await provider.charge(idempotency_key=key, amount_minor=700, currency="EUR")
    await sim.control(failure_rate=1, failure_point="after", first_attempt_only=True)
    before = await sim.stats()

    await provider.refund(idempotency_key=key)

    assert delta(await sim.stats(), before) == {
        "requests": 2,
        "refunds": 1,
        "failures_injected": 1,
    }


async def test_exhausted_retries_raise_unavailable_and_never_double_charge(
    sim: Sim, payment_settings: Settings
):
    # A high threshold keeps the breaker closed: this is about the retry budget alone.
    settings = payment_settings.model_copy(update={"breaker_failure_threshold": 100})
    provider = HttpPaymentProvider(settings)
    await sim.control(failure_rate=1, failure_point="mixed")
    key = new_key()
    before = await sim.stats()
    try:
        with pytest.raises(PaymentUnavailable) as caught:
            await provider.charge(idempotency_key=key, amount_minor=100, currency="EUR")
    finally:
        await provider.aclose()

    attempts = settings.payments_retries + 1
    after = await sim.stats()
    assert after["requests"] - before["requests"] == attempts
    assert after["failures_injected"] - before["failures_injected"] == attempts
    assert after["charges_created"] - before["charges_created"] <= 1
    assert caught.value.status == 503
    assert caught.value.headers == {"Retry-After": "1"}
    assert caught.value.outcome == "unavailable"


async def test_registry_builds_the_configured_provider(payment_settings: Settings):
    provider = create_provider(payment_settings)
    assert isinstance(provider, HttpPaymentProvider)
    await provider.aclose()
    with pytest.raises(ValueError, match="unknown payments provider"):
        create_provider(payment_settings.model_copy(update={"payments_provider": "nope"}))
