"""The admission worker: opens, draws, admits, throttles and closes every live sale.

Any number of replicas may run. Per sale, one replica leads through a Redis lease
(`<prefix>:{sale:<id>}:lease` = `<worker id>:<fence>`, the fence incremented on every
acquisition); every script that changes the sale's queue checks that the caller's lease value is
still the current one, atomically with the change, so a replica that stalled past its lease
cannot admit anyone (the fencing check). Status changes in PostgreSQL are conditional updates
(`scheduled -> open -> closed`), so a stale leader cannot undo them either.

Each tick, per led sale: open at opens_at; draw the pre-queue into random places (chunked);
every `admission_stock_check_s` look at the remaining tickets (sold out -> close); every
`admission_control_interval_s` run the control law on the downstream signals (auto mode);
then one PREPARE call (renew lease, expire admissions and abandoned places, token bucket) and,
when fans are due, one COMMIT call with their freshly signed admission tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from app.booking import service as booking_service
from app.catalog.errors import ConcertNotFound
from app.catalog.seat import service as seat_service
from app.catalog.seat.schemas import SeatMapSummary
from app.core.state import AppState
from app.queue import repository, service
from app.queue.control import Aimd, Signals, Targets, next_rate
from app.queue.errors import InvalidSaleState
from app.queue.metrics import (
    ADMISSION_RATE,
    ADMITTED,
    ADMITTED_ACTIVE,
    CONTROL_DECISIONS,
    FAN_EVENTS,
    LEADER,
    MAX_ACTIVE,
    QUEUE_FANS,
    QUEUE_LENGTH,
    TICK_SECONDS,
)
from app.queue.models import CloseReason, Sale, SaleStatus
from app.queue.signals import read_signals
from app.queue.store import QueueStore
from app.queue.tokens import issue_admission_token, new_jti

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Stock:
    free_units: int  # available seats + general-admission tickets left
    held_seats: int
    ga_stock: int | None  # None: the concert has no general admission


def stock_cap(free_units: int, oversubscription: float, headroom: int) -> int:
    """How many fans may be admitted and shopping at once for this many free tickets: none
    when nothing is free (tickets in carts may come back), else the larger of the ratio and
    free + headroom."""
    if free_units <= 0:
        return 0
    return max(math.ceil(free_units * oversubscription), free_units + headroom)


async def stock_of(state: AppState, concert_id: int) -> Stock:
    """Remaining inventory through the catalog's and booking's service functions."""
    cached = await seat_service.availability_cached(
        state.sessionmaker, state.cache, concert_id=concert_id
    )
    assert cached.body is not None
    seats = SeatMapSummary.model_validate_json(cached.body)
    try:
        ga_stock: int | None = (
            await booking_service.get_general_admission(state, concert_id=concert_id)
        ).stock
    except ConcertNotFound:
        ga_stock = None
    return Stock(
        free_units=seats.available + (ga_stock or 0),
        held_seats=sum(s.held for s in seats.sections),
        ga_stock=ga_stock,
    )


@dataclass
class _SaleRun:
    sale: Sale
    owner: str | None = None
    next_stock_check: float = 0.0
    next_control: float = 0.0
    stock: Stock | None = None
    sold_out_seen: int = 0  # consecutive sold-out observations (one could be a transient)
    drawn: bool = False  # the pre-queue is in line (it never refills once the sale is open)
    ga_empty_since: float | None = None
    # The sale's Redis counters when last exported: only growth seen while leading is counted.
    counted: dict[str, float] | None = None


class AdmissionWorker:
    def __init__(self, state: AppState, *, worker_id: str | None = None) -> None:
        self.state = state
        self.settings = state.settings
        self.store = QueueStore(state.redis, state.keys)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.runs: dict[int, _SaleRun] = {}
        self.signals = Signals()
        self._next_sync = 0.0
        self._next_signals = 0.0
        s = self.settings
        self.targets = Targets(
            consumer_lag=s.admission_target_lag,
            p95_ms=s.admission_target_p95_ms,
            error_ratio=s.admission_target_error_ratio,
        )

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        log.info("admission_worker_started", worker_id=self.worker_id)
        try:
            while not stop.is_set():
                started = loop.time()
                try:
                    await self.tick()
                except Exception:
                    log.exception("admission_tick_failed")
                elapsed = loop.time() - started
                TICK_SECONDS.observe(elapsed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        stop.wait(), max(0.0, self.settings.admission_tick_s - elapsed)
                    )
        finally:
            await self.release_all()
            log.info("admission_worker_stopped", worker_id=self.worker_id)

    async def tick(self) -> None:
        now = asyncio.get_running_loop().time()
        if now >= self._next_sync:
            await self._sync_sales()
            self._next_sync = now + self.settings.admission_sync_s
        if self.settings.admission_backpressure and now >= self._next_signals:
            self.signals = await read_signals(self.state.redis, self.state.keys)
            self._next_signals = now + self.settings.admission_control_interval_s
        await asyncio.gather(*(self._serve_safely(run) for run in list(self.runs.values())))

    async def release_all(self) -> None:
        """Give up every lease so another replica takes over at once (graceful shutdown)."""
        for run in self.runs.values():
            if run.owner is not None:
                try:
                    await self.store.unlease(run.sale.id, run.owner)
                except Exception:
                    log.warning("lease_release_failed", sale_id=run.sale.id, exc_info=True)
                run.owner = None
                LEADER.labels(str(run.sale.id)).set(0)

    async def _sync_sales(self) -> None:
        async with self.state.sessionmaker() as session:
            sales = await repository.active_sales(session)
        live = {sale.id for sale in sales}
        for sale_id in [i for i in self.runs if i not in live]:
            await self._drop(sale_id)
        for sale in sales:
            run = self.runs.get(sale.id)
            if run is None:
                self.runs[sale.id] = _SaleRun(sale)
            else:
                run.sale = sale
            # Keeps Redis in line with the row (e.g. rebuilds a sale that Redis lost).
            await service.sync_sale(self.state, sale)

    async def _drop(self, sale_id: int) -> None:
        run = self.runs.pop(sale_id, None)
        if run is not None and run.owner is not None:
            await self.store.unlease(sale_id, run.owner)
        LEADER.labels(str(sale_id)).set(0)
        _forget_sale_gauges(sale_id)

    async def _serve_safely(self, run: _SaleRun) -> None:
        try:
            await self._serve(run)
        except Exception:
            log.exception("admission_sale_step_failed", sale_id=run.sale.id)

    async def _serve(self, run: _SaleRun) -> None:
        s, sale_id = self.settings, run.sale.id
        if run.owner is None:
            run.owner = await self.store.acquire(
                sale_id, self.worker_id, ttl_ms=s.admission_lease_ttl_ms
            )
            if run.owner is None:
                return
            log.info("lease_acquired", sale_id=sale_id, owner=run.owner)
        LEADER.labels(str(sale_id)).set(1)
        now = datetime.now(UTC)
        if now >= run.sale.closes_at:
            await self._close(run, CloseReason.time)
            return
        if run.sale.status == SaleStatus.scheduled and now >= run.sale.opens_at:
            await self._open(run)
        clock = asyncio.get_running_loop().time()
        if run.sale.status == SaleStatus.open:
            if not run.drawn and not await self._draw(run):
                return
            if clock >= run.next_stock_check:
                run.next_stock_check = clock + s.admission_stock_check_s
                if await self._check_stock(run, clock):
                    await self._close(run, CloseReason.sold_out)
                    return
            if s.admission_backpressure and clock >= run.next_control:
                run.next_control = clock + s.admission_control_interval_s
                await self._control(run)
        await self._admit(run)

    async def _open(self, run: _SaleRun) -> None:
        try:
            run.sale = await service.open_sale(self.state, sale_id=run.sale.id)
            log.info("sale_opened", sale_id=run.sale.id)
        except InvalidSaleState:  # opened or closed by an organizer meanwhile
            run.sale = await service.get_sale(self.state, sale_id=run.sale.id)
            await service.sync_sale(self.state, run.sale)

    async def _close(self, run: _SaleRun, reason: CloseReason) -> None:
        try:
            await service.close_sale(self.state, sale_id=run.sale.id, reason=reason)
            log.info("sale_closed", sale_id=run.sale.id, reason=reason.value)
        except InvalidSaleState:
            pass  # already closed
        await self._drop(run.sale.id)

    async def _draw(self, run: _SaleRun) -> bool:
        """Move the pre-queue into line in its secret random order; False if the lease is
        lost. Admission starts only once nobody is left in the pre-queue."""
        assert run.owner is not None
        moved = 0
        while True:
            step = await self.store.seal(
                run.sale.id, run.owner, chunk=self.settings.admission_seal_chunk
            )
            if step is None:
                self._lost(run)
                return False
            moved += step[0]
            if step[1] == 0:
                break
        run.drawn = True
        log.info("pre_queue_drawn", sale_id=run.sale.id, fans=moved)
        return True

    async def _check_stock(self, run: _SaleRun, clock: float) -> bool:
        """Refresh the stock figures; True when the sale is sold out for sure."""
        stock = await stock_of(self.state, run.sale.concert_id)
        run.stock = stock
        if stock.ga_stock == 0:
            run.ga_empty_since = run.ga_empty_since if run.ga_empty_since is not None else clock
        else:
            run.ga_empty_since = None
        # General-admission holds are not visible as such: once the stock is 0, wait out the
        # longest a hold can live (TTL + payment grace); if nothing came back, it was all sold.
        quiet = self.settings.hold_ttl_s + self.settings.payment_grace_s
        ga_done = stock.ga_stock is None or (
            run.ga_empty_since is not None and clock - run.ga_empty_since >= quiet
        )
        sold_out = stock.free_units == 0 and stock.held_seats == 0 and ga_done
        run.sold_out_seen = run.sold_out_seen + 1 if sold_out else 0
        await self._report(run)
        return run.sold_out_seen >= 2

    async def _control(self, run: _SaleRun) -> None:
        assert run.owner is not None
        s, sale = self.settings, run.sale
        current = await self.store.rate(sale.id)
        decision = next_rate(
            current,
            self.signals,
            targets=self.targets,
            min_rate=sale.min_rate,
            max_rate=sale.max_rate,
            law=Aimd(
                increase=s.admission_rate_increase * sale.max_rate,
                decrease=s.admission_rate_decrease,
            ),
        )
        CONTROL_DECISIONS.labels(decision.action).inc()
        if not math.isclose(decision.rate, current):
            result = await self.store.control(sale.id, run.owner, decision.rate)
            if result == -1:
                self._lost(run)
            elif result == 1 and decision.action == "decrease":
                log.info(
                    "admission_rate_lowered",
                    sale_id=sale.id,
                    rate=round(decision.rate, 3),
                    pressure=round(decision.pressure, 3),
                )

    async def _admit(self, run: _SaleRun) -> None:
        assert run.owner is not None
        s, sale = self.settings, run.sale
        stock = run.stock
        if stock is None:
            cap, stock_state, free = -1, "unknown", None
        else:
            cap = stock_cap(
                stock.free_units, s.admission_oversubscription, s.admission_stock_headroom
            )
            stock_state = "ok" if stock.free_units > 0 else "in_carts"
            free = stock.free_units
        tau_ms = int(s.admission_rate_ewma_tau_s * 1000)
        grace_ms = int(s.queue_grace_s * 1000)
        prepared = await self.store.prepare(
            sale.id,
            run.owner,
            lease_ttl_ms=s.admission_lease_ttl_ms,
            grace_ms=grace_ms,
            stock_cap=cap,
            burst_s=s.admission_burst_s,
            tau_ms=tau_ms,
            stock_state=stock_state,
            free_units=free,
            idle_ms=int(s.admission_idle_s * 1000),
        )
        if prepared.kind == "lost":
            self._lost(run)
            return
        if prepared.kind == "wait" and prepared.status == "open" and not run.drawn:
            # Opened by an organizer since the last sync: draw on the next tick, not in 2 s.
            run.sale = await service.get_sale(self.state, sale_id=sale.id)
        if prepared.kind != "admit":  # waiting, idle, or closed meanwhile (next sync drops it)
            return
        issued = datetime.fromtimestamp(prepared.now_ms / 1000, UTC)
        expires_ms = prepared.now_ms + s.admission_token_ttl_s * 1000
        expires = datetime.fromtimestamp(expires_ms / 1000, UTC)
        tokens = [
            (
                user_id,
                issue_admission_token(
                    s,
                    sale_id=sale.id,
                    concert_id=sale.concert_id,
                    user_id=user_id,
                    position=place,
                    expires_at=expires,
                    issued_at=issued,
                    jti=new_jti(),
                ),
            )
            for user_id, place in prepared.heads
        ]
        admitted = await self.store.commit(
            sale.id,
            run.owner,
            grace_ms=grace_ms,
            tau_ms=tau_ms,
            budget=prepared.budget,
            expires_ms=expires_ms,
            arrival_ms=int(self.settings.admission_arrival_s * 1000),
            tokens=tokens,
        )
        if admitted is None:
            self._lost(run)
            return
        ADMITTED.labels(str(sale.id)).inc(len(admitted))

    async def _report(self, run: _SaleRun) -> None:
        stats = await self.store.stats(run.sale.id)
        if stats is None:
            return
        label = str(run.sale.id)
        ADMISSION_RATE.labels(label).set(stats.rate)
        QUEUE_LENGTH.labels(label, "waiting").set(stats.queue_length)
        QUEUE_LENGTH.labels(label, "pre_queue").set(stats.pre_queue)
        ADMITTED_ACTIVE.labels(label).set(stats.admitted_active)
        MAX_ACTIVE.labels(label).set(run.sale.max_active)
        now = {event: stats.counters.get(event, 0.0) for event in FAN_EVENTS}
        for event, value in now.items():
            before = value if run.counted is None else run.counted.get(event, 0.0)
            QUEUE_FANS.labels(label, event).inc(max(0.0, value - before))
        run.counted = now

    def _lost(self, run: _SaleRun) -> None:
        log.warning("lease_lost", sale_id=run.sale.id, owner=run.owner)
        run.owner = None
        run.counted = None
        LEADER.labels(str(run.sale.id)).set(0)
        _forget_sale_gauges(run.sale.id)


def _forget_sale_gauges(sale_id: int) -> None:
    # Only the lease holder reports a sale: a stale length or rate kept by a former leader (or
    # for a closed sale) would read as a stalled queue.
    label = str(sale_id)
    for gauge, labels in (
        (ADMISSION_RATE, [(label,)]),
        (ADMITTED_ACTIVE, [(label,)]),
        (MAX_ACTIVE, [(label,)]),
        (QUEUE_LENGTH, [(label, "waiting"), (label, "pre_queue")]),
    ):
        for values in labels:
            with contextlib.suppress(KeyError):
                gauge.remove(*values)
