"""A circuit breaker shared by every API worker: purgatory with its state in Redis.

Why purgatory (not aiobreaker): it is asyncio-native, typed and still maintained, and it keeps
the breaker state in Redis, so the N uvicorn workers open, half-open and close one breaker
together instead of each burning its own N failed calls against a provider that is down.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from prometheus_client import Counter, Gauge
from purgatory import AsyncAbstractUnitOfWork, AsyncCircuitBreakerFactory, ContextChanged, Event
from purgatory.domain.model import OpenedState
from purgatory.service._async.circuitbreaker import AsyncCircuitBreaker
from purgatory.service._async.repository import AsyncRedisRepository
from redis.asyncio import Redis
from redis.exceptions import RedisError

BREAKER_STATE = Gauge(
    "tr_circuit_breaker_state",
    "Circuit breaker state last seen by a live process: 0 closed, 1 half-open, 2 open.",
    ["breaker"],
    # The state is shared through Redis, so the most recent observation of any worker is true.
    multiprocess_mode="livemostrecent",
)
BREAKER_TRANSITIONS = Counter(
    "tr_circuit_breaker_transitions_total",
    "Circuit breaker state changes by target state (closed, half_open, open).",
    ["breaker", "to"],
)

# purgatory state name -> (metric label, gauge value)
_STATES: dict[str, tuple[str, int]] = {
    "closed": ("closed", 0),
    "half-opened": ("half_open", 1),
    "opened": ("open", 2),
}
# The breaker protects calls but must never stall or decide them: when its store is slow or
# down, the call goes through unguarded (fail open) and the problem is logged.
STORE_TIMEOUT_S = 0.25
_STORE_ERRORS = (RedisError, OSError, TimeoutError)

log = structlog.get_logger(__name__)


class CircuitOpenError(Exception):
    """The breaker is open: the call was not made."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"circuit open; calls resume in {retry_after} s")
        self.retry_after = retry_after


class _Repository(AsyncRedisRepository):
    def __init__(self, redis: Redis, prefix: str) -> None:
        # No super().__init__(): it opens a client of its own from a URL, with default timeouts
        # and the fixed key prefix "cbr::"; this one uses ours and the deployment's namespace.
        self.redis = redis
        self.messages = []
        self.prefix = prefix


class _UnitOfWork(AsyncAbstractUnitOfWork):
    def __init__(self, repository: _Repository) -> None:
        self.contexts = repository

    async def commit(self) -> None:
        """Each Redis write applies at once: nothing to commit."""

    async def rollback(self) -> None:
        """Nothing to roll back."""


class CircuitBreaker:
    """A named breaker: opens after `failure_threshold` consecutive failed calls, lets calls
    through again (half-open) `recovery_s` after opening, and closes on the next success."""

    def __init__(
        self,
        name: str,
        *,
        redis: Redis,
        key_prefix: str,
        failure_threshold: int,
        recovery_s: float,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._recovery_s = recovery_s
        self._factory = AsyncCircuitBreakerFactory(
            default_threshold=failure_threshold,
            default_ttl=recovery_s,
            uow=_UnitOfWork(_Repository(redis, key_prefix)),
        )
        self._factory.add_listener(self._on_event)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the block as one call through the breaker.

        Raises CircuitOpenError, without running the block, while the breaker is open. Any
        exception from the block counts as a failure, except cancellation, which says nothing
        about the provider's health and is not recorded.
        """
        breaker = await self._load()
        if breaker is None:
            yield
            return
        try:
            await breaker.__aenter__()
        except OpenedState as exc:
            raise CircuitOpenError(self._until_half_open(exc.opened_at)) from None
        # Entered and exited by hand so that a store error while recording the result is only
        # logged: it must never turn a charge that succeeded into a failure.
        try:
            yield
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await self._record(breaker, exc)
            raise
        await self._record(breaker, None)

    async def retry_after(self) -> int:
        """Seconds until the breaker lets calls through again; 1 when it is not open."""
        breaker = await self._load()
        if breaker is None or breaker.context.state != "opened":
            return 1
        return self._until_half_open(breaker.context.opened_at or time.time())

    def _until_half_open(self, opened_at: float) -> int:
        return max(1, math.ceil(opened_at + self._recovery_s - time.time()))

    async def _load(self) -> AsyncCircuitBreaker | None:
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                breaker = await self._factory.get_breaker(self.name)
        except _STORE_ERRORS as exc:
            log.warning("circuit_breaker_store_unavailable", breaker=self.name, error=repr(exc))
            return None
        # The stored threshold and TTL date from the breaker's creation; the settings win.
        breaker.context.threshold = self._threshold
        breaker.context.ttl = self._recovery_s
        self._publish(breaker.context.state)
        return breaker

    async def _record(self, breaker: AsyncCircuitBreaker, exc: BaseException | None) -> None:
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                if exc is None:
                    await breaker.__aexit__(None, None, None)
                else:
                    await breaker.__aexit__(type(exc), exc, exc.__traceback__)
        except _STORE_ERRORS as store_exc:
            log.warning(
                "circuit_breaker_store_unavailable", breaker=self.name, error=repr(store_exc)
            )

    def _on_event(self, name: str, event_type: str, event: Event) -> None:
        if not isinstance(event, ContextChanged):
            return
        label, _ = _STATES[event.state]
        BREAKER_TRANSITIONS.labels(name, label).inc()
        self._publish(event.state)
        log.warning("circuit_breaker_transition", breaker=name, to=label)

    def _publish(self, state: str) -> None:
        BREAKER_STATE.labels(self.name).set(_STATES[state][1])
