"""Sales and their waiting room: create/open/close, join, status, leave, admission checks.

PostgreSQL is written first for every sale status change, then Redis follows (`sync_sale`); Redis
is brought back in line from the row whenever it does not know a sale, so a lost Redis loses
places in line (fans rejoin) but never a sale's status or window.
"""

from __future__ import annotations

import math
import random
import secrets
from datetime import UTC, datetime

import jwt
from sqlalchemy.exc import IntegrityError

from app.catalog.concert import service as concert_service
from app.catalog.concert.models import ConcertStatus
from app.catalog.concert.schemas import ConcertUpdate
from app.core.problems import RateLimited
from app.core.state import AppState
from app.queue import repository
from app.queue.errors import (
    AdmissionExpired,
    AdmissionInvalid,
    AdmissionOtherFan,
    AdmissionOtherSale,
    AdmissionRevoked,
    ConcertNotSellable,
    InvalidSaleState,
    NotInQueue,
    PreQueueNotOpen,
    RateOutOfBounds,
    SaleClosed,
    SaleExists,
    SaleNotFound,
)
from app.queue.metrics import QUEUE_JOINS, QUEUE_STATUS
from app.queue.models import CloseReason, Sale, SaleStatus
from app.queue.schemas import QueueStatus, RateRead, RateSet, SaleCreate, SaleStats
from app.queue.signals import read_signals
from app.queue.store import FanState, Limited, Limits, QueueStore, SaleHead, SaleSnapshot
from app.queue.tokens import AdmissionClaims, decode_admission_token

# How long "this concert has no sale" is cached for the booking gate.
NO_SALE_TTL_S = 5
_jitter = random.SystemRandom()


def store_of(state: AppState) -> QueueStore:
    return QueueStore(state.redis, state.keys)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def snapshot(sale: Sale) -> SaleSnapshot:
    return SaleSnapshot(
        status=sale.status,
        reason=sale.close_reason or "",
        concert_id=sale.concert_id,
        opens_ms=_ms(sale.opens_at),
        closes_ms=_ms(sale.closes_at),
        max_active=sale.max_active,
        min_rate=sale.min_rate,
        max_rate=sale.max_rate,
        initial_rate=sale.initial_rate,
    )


async def sync_sale(state: AppState, sale: Sale) -> str:
    """Bring the sale's Redis state in line with its row; returns the status Redis has now."""
    return await store_of(state).sync(
        sale.id, snapshot(sale), retention_ms=state.settings.queue_closed_retention_s * 1000
    )


async def get_sale(state: AppState, *, sale_id: int) -> Sale:
    async with state.sessionmaker() as session:
        sale = await repository.get_sale(session, sale_id)
    if sale is None:
        raise SaleNotFound(f"No sale with id {sale_id}.")
    return sale


async def _load_and_sync(state: AppState, sale_id: int) -> Sale:
    sale = await get_sale(state, sale_id=sale_id)
    await sync_sale(state, sale)
    return sale


# --- organizers -------------------------------------------------------------------------------


async def create_sale(state: AppState, *, data: SaleCreate) -> Sale:
    """Schedule a sale for a concert (one live sale per concert)."""
    async with state.sessionmaker() as session:
        concert = await concert_service.get_concert(session, concert_id=data.concert_id)
        if concert.status == ConcertStatus.finished:
            raise ConcertNotSellable(f"Concert {concert.id} is finished.")
        live = await repository.live_sale_of(session, data.concert_id)
        if live is not None:
            raise SaleExists(
                f"Concert {data.concert_id} already has sale {live.id} ({live.status}).",
                sale_id=live.id,
            )
        sale = Sale(**data.model_dump())
        session.add(sale)
        try:
            await session.commit()
        except IntegrityError as exc:  # a concurrent create won the partial unique index
            await session.rollback()
            raise SaleExists(f"Concert {data.concert_id} already has a live sale.") from exc
        await session.refresh(sale)
    await sync_sale(state, sale)
    await state.redis.set(store_of(state).concert_key(sale.concert_id), sale.id)
    return sale


async def _put_concert_on_sale(state: AppState, concert_id: int) -> None:
    # Opening the waiting room is the on-sale moment: a draft concert would refuse every
    # admitted fan's booking.
    async with state.sessionmaker() as session:
        concert = await concert_service.get_concert(session, concert_id=concert_id)
        if concert.status == ConcertStatus.draft:
            await concert_service.update_concert(
                session,
                state.cache,
                concert_id=concert_id,
                data=ConcertUpdate(status=ConcertStatus.on_sale),
            )


async def _transition(
    state: AppState, sale_id: int, *, allowed_from: tuple[str, ...], values: dict[str, object]
) -> Sale:
    now = datetime.now(UTC)
    async with state.sessionmaker() as session, session.begin():
        sale = await repository.transition(
            session, sale_id, allowed_from=allowed_from, values=values | {"updated_at": now}
        )
        if sale is None:
            current = await repository.get_sale(session, sale_id)
            if current is None:
                raise SaleNotFound(f"No sale with id {sale_id}.")
            raise InvalidSaleState(
                f"Sale {sale_id} is {current.status}.", sale_status=current.status
            )
    await sync_sale(state, sale)
    return sale


async def open_sale(state: AppState, *, sale_id: int) -> Sale:
    """Open now (the worker calls this at opens_at); the pre-queue is drawn by the worker."""
    sale = await _transition(
        state,
        sale_id,
        allowed_from=(SaleStatus.scheduled,),
        values={"status": SaleStatus.open, "opened_at": datetime.now(UTC)},
    )
    await _put_concert_on_sale(state, sale.concert_id)
    return sale


async def close_sale(state: AppState, *, sale_id: int, reason: CloseReason) -> Sale:
    """Close: admissions are revoked, everyone still in line is told closed or sold_out."""
    return await _transition(
        state,
        sale_id,
        allowed_from=(SaleStatus.scheduled, SaleStatus.open),
        values={
            "status": SaleStatus.closed,
            "close_reason": reason,
            "closed_at": datetime.now(UTC),
        },
    )


async def set_rate(state: AppState, *, sale_id: int, data: RateSet) -> RateRead:
    """Set the admission rate; validated against the sale before anything changes."""
    sale = await get_sale(state, sale_id=sale_id)
    if sale.status == SaleStatus.closed:
        raise InvalidSaleState(f"Sale {sale_id} is closed.", sale_status=sale.status)
    low = sale.min_rate if data.mode == "auto" else 0.0
    if not low <= data.rate <= sale.max_rate:
        raise RateOutOfBounds(
            f"A {data.mode} rate must be within [{low:g}, {sale.max_rate:g}] fans/s.",
            min=low,
            max=sale.max_rate,
        )
    store = store_of(state)
    if not await store.set_rate(sale_id, data.rate, data.mode):
        await sync_sale(state, sale)
        await store.set_rate(sale_id, data.rate, data.mode)
    return RateRead(sale_id=sale_id, rate=data.rate, mode=data.mode)


def _eta(people: int, rate: float | None) -> int | None:
    if rate is None or rate < 1e-3:
        return None
    return math.ceil(people / rate)


async def sale_stats(state: AppState, *, sale_id: int) -> SaleStats:
    sale = await get_sale(state, sale_id=sale_id)
    store = store_of(state)
    stats = await store.stats(sale_id)
    if stats is None:
        await sync_sale(state, sale)
        stats = await store.stats(sale_id)
        assert stats is not None
    c = stats.counters
    measured = c.get("ewma")
    queued_at_close = c.get("queued_at_close")
    return SaleStats(
        sale_id=sale.id,
        status=SaleStatus(sale.status),
        close_reason=CloseReason(sale.close_reason) if sale.close_reason else None,
        queue_length=stats.queue_length,
        pre_queue=stats.pre_queue,
        admitted_active=stats.admitted_active,
        admitted_total=int(c.get("admitted_total", 0)),
        joined=int(c.get("joined", 0)),
        abandoned=int(c.get("abandoned", 0)),
        admission_expired=int(c.get("admission_expired", 0)),
        admission_unclaimed=int(c.get("admission_unclaimed", 0)),
        admission_idle=int(c.get("admission_idle", 0)),
        left=int(c.get("left", 0)),
        completed=int(c.get("completed", 0)),
        queued_at_close=int(queued_at_close) if queued_at_close is not None else None,
        current_rate=stats.rate,
        rate_mode="manual" if stats.control == "manual" else "auto",
        measured_rate=measured,
        eta_last_seconds=_eta(stats.queue_length + stats.pre_queue, measured),
        max_active=sale.max_active,
        stock_state=stats.stock_state if stats.stock_state in ("ok", "in_carts") else "unknown",
        free_units=stats.free_units,
        leader=stats.leader,
        consumer_lag=(await read_signals(state.redis, state.keys)).consumer_lag,
    )


# --- fans -------------------------------------------------------------------------------------


def _poll_after(
    longest: float,
    shortest: float,
    grace_s: float,
    base: float,
    admission_s: float = math.inf,
    arrival_s: float = math.inf,
) -> float:
    # Jittered so a crowd that joined together does not poll together; capped well inside the
    # grace period so a fan who follows the advice never loses the place, well inside the
    # admission's lifetime so a fan admitted between two checks still has time to shop, and
    # inside the arrival window (with the jitter) so that fan collects the admission in time.
    ceiling = max(shortest, min(longest, grace_s / 3, admission_s / 4, arrival_s / 1.5))
    value = min(max(base, shortest), ceiling) * _jitter.uniform(0.8, 1.2)
    return round(min(max(value, shortest), ceiling), 1)


def build_status(
    state: AppState, sale_id: int, head: SaleHead, fan: FanState | None, *, push: bool = False
) -> QueueStatus:
    """The answer for one fan (`push`: for the event stream, which needs no poll advice)."""
    s = state.settings
    common = {
        "sale_id": sale_id,
        "opens_at": _at(head.opens_ms),
        "closes_at": _at(head.closes_ms),
        "events_url": f"/sales/{sale_id}/queue/me/events",
    }

    def poll(base: float) -> float | None:
        if push:
            return None
        return _poll_after(
            s.queue_poll_max_s,
            s.queue_poll_min_s,
            s.queue_grace_s,
            base,
            s.admission_token_ttl_s,
            s.admission_arrival_s or math.inf,
        )

    if head.status == "closed":
        sold_out = head.reason == CloseReason.sold_out
        return QueueStatus(
            state="sold_out" if sold_out else "closed",
            reason=None if sold_out else head.reason or CloseReason.time,
            message="Sold out: every ticket of this sale has been sold."
            if sold_out
            else "This sale has closed.",
            **common,
        )
    assert fan is not None
    if fan.state == "admitted":
        assert fan.expires_ms is not None
        return QueueStatus(
            state="admitted",
            eta_seconds=0,
            people_ahead=0,
            admission_token=fan.token,
            admission_expires_at=_at(fan.expires_ms),
            message="It's your turn: book now, sending the admission token as X-Admission-Token.",
            **common,
        )
    if fan.state == "expired":
        why = {
            "abandoned": "you did not check your status for a while",
            "admission_unclaimed": "it was your turn but you did not come back for it in time",
            "admission_idle": "you did not use your turn to book for a while",
        }.get(fan.reason or "", "your admission ran out before you finished")
        return QueueStatus(
            state="expired",
            reason=fan.reason,
            message=f"Your place expired because {why}. Join again for a new place at the back.",
            rejoin_url=f"/sales/{sale_id}/queue",
            **common,
        )
    if fan.state == "pre_queue":
        until_open = max(0.0, (head.opens_ms - head.now_ms) / 1000)
        drawing = head.status == "open"
        return QueueStatus(
            state="pre_queue",
            eta_seconds=None if drawing else math.ceil(until_open),
            poll_after_seconds=poll(until_open / 2),
            message="The sale has opened: your random place in line is being drawn."
            if drawing
            else "You are in the pre-queue. When the sale opens, everyone in it gets a random "
            "place in line; arriving earlier gives no advantage.",
            **common,
        )
    assert fan.ahead is not None
    rate = head.measured_rate if head.measured_rate is not None else head.rate
    eta = _eta(fan.ahead + 1, rate)
    message = f"You are in line: {fan.ahead} fans ahead of you."
    if head.stock_state == "in_carts":
        message += (
            " All remaining tickets are in other fans' carts; admission resumes if any are "
            "released."
        )
    return QueueStatus(
        state="waiting",
        position=fan.place,
        people_ahead=fan.ahead,
        eta_seconds=eta,
        # A few checks over the expected wait (more near the head, where the advice reaches its
        # floor): the ETA on the page counts down between them.
        poll_after_seconds=poll(_poll_base(fan.ahead, eta, s.queue_poll_head_rate)),
        message=message,
        **common,
    )


def _poll_base(ahead: int, eta: int | None, head_rate: float) -> float:
    """Seconds until the next check, before bounds and jitter: a quarter of the expected wait,
    and never slower than a line moving at `head_rate` fans/s. Near the head that second bound
    matters: while admission pauses (everything left in carts) the measured rate falls to 0 and
    the ETA grows without bound, yet the next fans in line must notice released tickets soon."""
    by_place = (ahead + 1) / head_rate
    return min(eta / 4, by_place) if eta is not None else by_place


def _limits(state: AppState, action: str, user_id: int, ip: str) -> Limits:
    s = state.settings
    per_account, per_ip = (
        (s.queue_join_limit_per_account, s.queue_join_limit_per_ip)
        if action == "join"
        else (s.queue_status_limit_per_account, s.queue_status_limit_per_ip)
    )
    return Limits(action, user_id, ip, per_account, per_ip, s.queue_limit_window_s * 1000)


def _rate_limited(wait_ms: int) -> RateLimited:
    return RateLimited(max(1, math.ceil(wait_ms / 1000)))


def _grace_ms(state: AppState) -> int:
    return int(state.settings.queue_grace_s * 1000)


async def join(state: AppState, *, sale_id: int, user_id: int, ip: str) -> tuple[QueueStatus, bool]:
    """Take a place (or get the one you have: idempotent per account). Returns (status, new)."""
    store = store_of(state)
    for attempt in (1, 2):
        result = await store.join(
            sale_id,
            user_id,
            grace_ms=_grace_ms(state),
            # The secret draw key: uniform from the OS CSPRNG, never shown to anyone.
            draw_key=secrets.randbits(52) / 2**52,
            window_ms=state.settings.queue_prequeue_window_s * 1000,
            # Counted again on the rare retry after a resync (Redis had lost the sale).
            limits=_limits(state, "join", user_id, ip),
        )
        if result.kind == "limited":
            assert result.wait_ms is not None
            raise _rate_limited(result.wait_ms)
        if result.kind != "unknown":
            break
        if attempt == 1:
            await _load_and_sync(state, sale_id)
    else:
        raise SaleNotFound(f"No sale with id {sale_id}.")
    assert result.head is not None
    if result.kind == "closed":
        QUEUE_JOINS.labels("closed").inc()
        sold_out = result.head.reason == CloseReason.sold_out
        raise SaleClosed(
            "Sold out: nothing left to queue for." if sold_out else "This sale has closed.",
            state="sold_out" if sold_out else "closed",
        )
    if result.kind == "too_early":
        QUEUE_JOINS.labels("too_early").inc()
        assert result.earliest_ms is not None
        raise PreQueueNotOpen(
            f"The waiting room opens at {_at(result.earliest_ms).isoformat()}.",
            join_from=_at(result.earliest_ms).isoformat(),
            opens_at=_at(result.head.opens_ms).isoformat(),
        )
    QUEUE_JOINS.labels(result.kind).inc()
    return build_status(state, sale_id, result.head, result.fan), result.kind == "new"


async def status(
    state: AppState, *, sale_id: int, user_id: int, ip: str, push: bool = False
) -> QueueStatus:
    """A fan's state; counts as the status check that keeps the place."""
    try:
        known, fan = await store_of(state).status_one(
            sale_id,
            user_id,
            grace_ms=_grace_ms(state),
            limits=_limits(state, "status", user_id, ip),
        )
    except Limited as exc:
        raise _rate_limited(exc.wait_ms) from None
    if known is None:  # Redis does not know the sale (yet, or any more): resync and ask again
        head, fan = await fan_state(state, sale_id=sale_id, user_id=user_id)
    else:
        head = known
        _require_place(head, fan, sale_id)
    answer = build_status(state, sale_id, head, fan, push=push)
    QUEUE_STATUS.labels(answer.state).inc()
    return answer


async def fan_state(
    state: AppState, *, sale_id: int, user_id: int
) -> tuple[SaleHead, FanState | None]:
    """Raw state of one fan; NotInQueue if the fan has no place and the sale is not over."""
    store = store_of(state)
    head, fans = await store.status(sale_id, [user_id], grace_ms=_grace_ms(state))
    if head is None:
        await _load_and_sync(state, sale_id)
        head, fans = await store.status(sale_id, [user_id], grace_ms=_grace_ms(state))
        if head is None:
            raise SaleNotFound(f"No sale with id {sale_id}.")
    fan = fans[0] if fans else None
    _require_place(head, fan, sale_id)
    return head, fan


def _require_place(head: SaleHead, fan: FanState | None, sale_id: int) -> None:
    if head.status != "closed" and (fan is None or fan.state == "none"):
        raise NotInQueue(
            "Join the queue first.", rejoin_url=f"/sales/{sale_id}/queue", sale_id=sale_id
        )


async def leave(state: AppState, *, sale_id: int, user_id: int) -> None:
    """Give up the place or the admission; the admission slot frees at once."""
    if not await store_of(state).leave(sale_id, user_id):
        await get_sale(state, sale_id=sale_id)  # 404 for an unknown sale, else idempotent


# --- the booking gate ---------------------------------------------------------------------------


async def sale_of_concert(state: AppState, *, concert_id: int) -> int | None:
    """The concert's latest sale (whose waiting room gates its bookings), or None."""
    key = store_of(state).concert_key(concert_id)
    cached = await state.redis.get(key)
    if cached is not None:
        return int(cached) or None
    async with state.sessionmaker() as session:
        sale_id = await repository.latest_sale_id_of(session, concert_id)
    if sale_id is None:
        await state.redis.set(key, 0, ex=NO_SALE_TTL_S)
        return None
    await state.redis.set(key, sale_id)
    return sale_id


async def verify_admission(
    state: AppState, *, token: str, concert_id: int, user_id: int
) -> AdmissionClaims:
    """Check an admission token for a booking of `concert_id` by `user_id`.

    401 forged/malformed/expired, 403 another sale's, another fan's, or no longer admitted
    (purchase completed, left, sale closed)."""
    try:
        claims = decode_admission_token(state.settings, token)
    except jwt.ExpiredSignatureError as exc:
        raise AdmissionExpired("The admission ran out; join the queue again.") from exc
    except jwt.InvalidTokenError as exc:
        raise AdmissionInvalid("The admission token is forged or malformed.") from exc
    if claims.concert_id != concert_id:
        raise AdmissionOtherSale(
            f"This admission is for sale {claims.sale_id}, not for concert {concert_id}."
        )
    if claims.user_id != user_id:
        raise AdmissionOtherFan("This admission token was issued to another account.")
    if not await store_of(state).verify(claims.sale_id, user_id, token):
        raise AdmissionRevoked(
            "This admission is no longer active (used, left, replaced, not collected in time, "
            "unused for too long or the sale closed)."
        )
    return claims


async def release_admission(
    state: AppState, *, user_id: int, sale_id: int | None = None, concert_id: int | None = None
) -> bool:
    """End a fan's admission because the purchase completed: the slot frees at once and the
    token stops working. Give `sale_id` (e.g. from `AdmittedFan`) or `concert_id`. Returns
    whether an admission was ended."""
    if sale_id is None:
        if concert_id is None:
            raise ValueError("give sale_id or concert_id")
        sale_id = await sale_of_concert(state, concert_id=concert_id)
        if sale_id is None:
            return False
    return await store_of(state).release(sale_id, user_id)
