"""The payment provider protocol and its HTTP implementation: per-attempt timeout, bounded
retries under one idempotency key, and a circuit breaker around every attempt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import httpx
import structlog
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from app.core.config import Settings
from app.core.redis import create_redis
from app.payments.breaker import CircuitBreaker, CircuitOpenError
from app.payments.errors import (
    PaymentConflict,
    PaymentDeclined,
    PaymentError,
    PaymentNotFound,
    PaymentProviderError,
    PaymentUnavailable,
)

PAYMENT_REQUESTS = Counter(
    "tr_payment_requests_total",
    "Payment provider calls by operation (charge, refund) and outcome.",
    ["operation", "outcome"],
)
PAYMENT_DURATION = Histogram(
    "tr_payment_duration_seconds",
    "Payment provider call duration, retries included, by operation.",
    ["operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PAYMENT_RETRIES = Counter(
    "tr_payment_retries_total",
    "Payment attempts retried after a timeout, a connection error or a 5xx, by operation.",
    ["operation"],
)

for _operation in ("charge", "refund"):  # series at 0 before the first retry
    PAYMENT_RETRIES.labels(_operation)

BREAKER_NAME = "payments"
# Full-jitter exponential backoff between attempts: up to 0.1 s, 0.2 s, ... capped at 2 s.
BACKOFF_BASE_S = 0.05
BACKOFF_MAX_S = 2.0

log = structlog.get_logger(__name__)


class ChargeStatus(StrEnum):
    succeeded = "succeeded"
    declined = "declined"
    refunded = "refunded"


@dataclass(frozen=True, slots=True)
class Charge:
    charge_id: str
    status: ChargeStatus
    amount_minor: int
    currency: str


class PaymentProvider(Protocol):
    async def charge(self, *, idempotency_key: str, amount_minor: int, currency: str) -> Charge:
        """Charge at most once per key: a repeated key returns the first charge.

        Raises PaymentDeclined, PaymentConflict (key reused with another amount or currency, or
        already refunded), PaymentUnavailable (provider down, breaker open) or
        PaymentProviderError.
        """
        ...

    async def refund(self, *, idempotency_key: str) -> None:
        """Refund the charge made under the key; refunding twice is a no-op.

        Raises PaymentNotFound (no charge under the key), PaymentConflict (the charge was
        declined), PaymentUnavailable or PaymentProviderError.
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the provider is unusable afterwards."""
        ...


class _ServerError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"payment provider answered {status_code}")


# Worth another attempt with the same key: the provider may or may not have acted on the first.
_TRANSIENT = (httpx.TransportError, TimeoutError, _ServerError)
_CHARGE = TypeAdapter(Charge)


@contextmanager
def _observed(operation: str, *, success: str) -> Iterator[None]:
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = success
    except PaymentError as exc:
        outcome = exc.outcome
        raise
    finally:
        PAYMENT_REQUESTS.labels(operation, outcome).inc()
        PAYMENT_DURATION.labels(operation).observe(time.perf_counter() - started)


def _unexpected(response: httpx.Response) -> PaymentProviderError:
    return PaymentProviderError(f"The payment provider answered {response.status_code}.")


class HttpPaymentProvider:
    """A PaymentProvider over the provider's HTTP API (the simulator's in dev and tests)."""

    def __init__(self, settings: Settings) -> None:
        self._timeout_s = settings.payments_timeout_s
        self._attempts = settings.payments_retries + 1
        self._http = httpx.AsyncClient(
            base_url=settings.payments_url, timeout=settings.payments_timeout_s
        )
        self._redis = create_redis(settings)
        self._breaker = CircuitBreaker(
            BREAKER_NAME,
            redis=self._redis,
            key_prefix=f"{settings.redis_prefix}:breaker:",
            failure_threshold=settings.breaker_failure_threshold,
            recovery_s=settings.breaker_recovery_s,
        )

    async def charge(self, *, idempotency_key: str, amount_minor: int, currency: str) -> Charge:
        body = {
            "idempotency_key": idempotency_key,
            "amount_minor": amount_minor,
            "currency": currency,
        }
        with _observed("charge", success="succeeded"):
            response = await self._send("charge", "/charges", body)
            if response.status_code == 409:
                raise PaymentConflict(
                    "This idempotency key was already used with another amount or currency."
                )
            if response.status_code not in (200, 201):
                raise _unexpected(response)
            try:
                charge = _CHARGE.validate_json(response.content)
            except ValidationError as exc:
                raise PaymentProviderError("The payment provider sent a malformed charge.") from exc
            if charge.status is ChargeStatus.declined:
                raise PaymentDeclined(charge_id=charge.charge_id)
            if charge.status is ChargeStatus.refunded:
                raise PaymentConflict("The charge under this idempotency key was refunded.")
            return charge

    async def refund(self, *, idempotency_key: str) -> None:
        with _observed("refund", success="refunded"):
            response = await self._send("refund", "/refunds", {"idempotency_key": idempotency_key})
            if response.status_code == 404:
                raise PaymentNotFound("No charge was made under this idempotency key.")
            if response.status_code == 409:
                raise PaymentConflict("A declined charge cannot be refunded.")
            if response.status_code != 200:
                raise _unexpected(response)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._redis.aclose()

    async def _send(self, operation: str, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST `body` with bounded retries; every attempt carries the same idempotency key."""

        def count_retry(state: RetryCallState) -> None:
            PAYMENT_RETRIES.labels(operation).inc()
            log.info("payment_retry", operation=operation, attempt=state.attempt_number)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=BACKOFF_BASE_S, max=BACKOFF_MAX_S),
            retry=retry_if_exception_type(_TRANSIENT),
            before_sleep=count_retry,
            reraise=True,
        )
        try:
            return await retrying(self._attempt, path, body)
        except CircuitOpenError as exc:
            raise PaymentUnavailable(
                retry_after=exc.retry_after,
                detail=f"Payments are paused after repeated provider failures; "
                f"retry in {exc.retry_after} s.",
                breaker_open=True,
            ) from None
        except _TRANSIENT as exc:
            log.warning("payment_attempts_exhausted", operation=operation, error=repr(exc))
            raise PaymentUnavailable(retry_after=await self._breaker.retry_after()) from exc

    async def _attempt(self, path: str, body: dict[str, Any]) -> httpx.Response:
        async with self._breaker.guard():
            # httpx times each phase (connect, write, read) alone; this bounds the whole attempt.
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.post(path, json=body)
            if response.status_code >= 500:
                raise _ServerError(response.status_code)
        return response
