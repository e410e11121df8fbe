"""The waiting room against real Redis and PostgreSQL, with the admission worker in-process so
each step is observable: idempotent joins, order kept after open, the random draw of the
pre-queue, abandonment, leaving, rate limits and a sale closing with fans still in line."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import secrets
import statistics
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.queue import push, service
from app.queue.errors import AdmissionRevoked
from app.queue.models import CloseReason
from app.queue.schemas import QueueStatus, RateSet
from app.queue.store import Limits, QueueStore, SaleSnapshot
from app.queue.worker import AdmissionWorker, stock_cap
from tests.booking.conftest import make_sale
from tests.fixtures.payments import Sim
from tests.queue.conftest import bulk_fans, new_sale, queue_app, tick_until

PROBLEM = "application/problem+json"


async def _status(client: httpx.AsyncClient, sale_id: int, headers: dict[str, str]) -> Any:
    r = await client.get(f"/sales/{sale_id}/queue/me", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_same_account_joining_concurrently_keeps_one_place(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with queue_app(settings) as (client, state):
        sale = await new_sale(client, admin_headers, opens_in=-1)
        await service.open_sale(state, sale_id=sale["id"])
        fan, other = await bulk_fans(state, settings, 2)
        await client.post(f"/sales/{sale['id']}/queue", headers=other.headers)
        joins = await asyncio.gather(
            *(client.post(f"/sales/{sale['id']}/queue", headers=fan.headers) for _ in range(20))
        )
        assert sorted(r.status_code for r in joins) == [200] * 19 + [201]
        assert {r.json()["position"] for r in joins} == {2}
        assert all(r.headers["location"] == f"/sales/{sale['id']}/queue/me" for r in joins)
        again = await _status(client, sale["id"], fan.headers)
        assert again["state"] == "waiting"
        assert (again["position"], again["people_ahead"]) == (2, 1)
        stats = (await client.get(f"/sales/{sale['id']}/stats", headers=admin_headers)).json()
        assert stats["joined"] == 2 and stats["queue_length"] == 2


async def test_order_after_open_is_first_come_first_served(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with queue_app(settings) as (client, state):
        sale = await new_sale(
            client, admin_headers, opens_in=-1, initial_rate=1000, max_rate=1000, max_active=10
        )
        await service.open_sale(state, sale_id=sale["id"])
        fans = await bulk_fans(state, settings, 30)
        for fan in fans:  # one after the other: arrival order is known
            r = await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)
            assert r.status_code == 201
        places = [(await _status(client, sale["id"], f.headers))["position"] for f in fans]
        assert places == list(range(1, 31))
        worker = AdmissionWorker(state)

        async def ten_admitted() -> bool:
            stats = await service.sale_stats(state, sale_id=sale["id"])
            return stats.admitted_active == 10

        await tick_until(worker, ten_admitted)
        states = [(await _status(client, sale["id"], f.headers)) for f in fans]
        assert [s["state"] for s in states] == ["admitted"] * 10 + ["waiting"] * 20
        # max_active holds: nobody else got in, and those waiting moved up.
        assert [s["people_ahead"] for s in states[10:]] == list(range(20))
        assert all(s["admission_token"] for s in states[:10])
        await worker.release_all()


async def test_pre_queue_is_drawn_at_random_and_later_arrivals_follow(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with queue_app(settings) as (client, state):
        sale = await new_sale(client, admin_headers, opens_in=3600)
        early = await bulk_fans(state, settings, 200)
        for fan in early:
            r = await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["state"] == "pre_queue" and body["position"] is None
            assert 3500 < body["eta_seconds"] <= 3600
        await service.open_sale(state, sale_id=sale["id"])
        late = await bulk_fans(state, settings, 5)
        for fan in late:  # arrive while the draw has not run yet
            assert (await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)).json()[
                "state"
            ] == "waiting"
        late_status = await _status(client, sale["id"], late[0].headers)
        assert late_status["position"] == 201
        assert late_status["people_ahead"] == 200  # the undrawn pre-queue is ahead
        waiting = await _status(client, sale["id"], early[0].headers)
        assert waiting["state"] == "pre_queue"

        worker = AdmissionWorker(state)
        await service.set_rate(state, sale_id=sale["id"], data=RateSet(rate=0, mode="manual"))
        store = service.store_of(state)

        async def drawn() -> bool:
            stats = await store.stats(sale["id"])
            return stats is not None and stats.pre_queue == 0

        await tick_until(worker, drawn)
        places = [(await _status(client, sale["id"], f.headers))["position"] for f in early]
        assert sorted(places) == list(range(1, 201))
        assert places != list(range(1, 201))
        # Arrival order carries no advantage: rank correlation with it is near zero.
        rho = statistics.correlation(list(range(200)), places)
        assert abs(rho) < 0.3, rho
        late_places = [(await _status(client, sale["id"], f.headers))["position"] for f in late]
        assert late_places == list(range(201, 206))
        await worker.release_all()


async def test_draw_is_uniform(settings: Settings, app: Any) -> None:
    """Store level, many small sales: each of 4 pre-queue fans is first about equally often."""
    state = app.state.tr
    store = QueueStore(state.redis, state.keys)
    trials, firsts = 400, Counter[int]()
    # Sale ids far above the database's, unique to this run.
    base = 10**12 + secrets.randbelow(10**9) * 1000
    scheduled = SaleSnapshot("scheduled", "", 1, int(time.time() * 1000), 2**50, 10, 1, 10, 10)
    for trial in range(trials):
        sale_id = base + trial
        await store.sync(sale_id, scheduled, retention_ms=60_000)
        for user in (1, 2, 3, 4):
            joined = await store.join(
                sale_id,
                user,
                grace_ms=60_000,
                draw_key=secrets.randbits(52) / 2**52,
                window_ms=2**50,
                limits=Limits("join", user, "t", 10, 10, 60_000),
            )
            assert joined.kind == "new"
        opened = dataclasses.replace(scheduled, status="open")
        await store.sync(sale_id, opened, retention_ms=60_000)
        owner = await store.acquire(sale_id, "test", ttl_ms=10_000)
        assert owner is not None
        assert await store.seal(sale_id, owner, chunk=10) == (4, 0)
        _, fans = await store.status(sale_id, [1, 2, 3, 4], grace_ms=60_000)
        firsts[next(u for u, f in zip((1, 2, 3, 4), fans, strict=True) if f.place == 1)] += 1
        await state.redis.delete(*store.keys(sale_id))
        for user in (1, 2, 3, 4):
            await state.redis.delete(
                *store.limited_keys(sale_id, Limits("join", user, "t", 10, 10, 60_000))
            )
    # Chi-square with 3 degrees of freedom; 16.27 is the 0.1% critical value.
    chi2 = sum((firsts[u] - trials / 4) ** 2 / (trials / 4) for u in (1, 2, 3, 4))
    assert chi2 < 16.27, firsts


async def test_abandoned_places_expire_and_never_block_admission(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with queue_app(settings, queue_grace_s=2.0) as (client, state):
        sale = await new_sale(client, admin_headers, opens_in=-1, max_active=5)
        await service.open_sale(state, sale_id=sale["id"])
        await service.set_rate(state, sale_id=sale["id"], data=RateSet(rate=0))
        gone, stays = await bulk_fans(state, settings, 2)
        for fan in (gone, stays):
            await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)
        for _ in range(8):  # `stays` keeps checking, `gone` closed the tab
            await asyncio.sleep(0.3)
            await _status(client, sale["id"], stays.headers)
        worker = AdmissionWorker(state)
        await worker.tick()
        expired = await _status(client, sale["id"], gone.headers)
        assert expired["state"] == "expired" and expired["reason"] == "abandoned"
        assert expired["rejoin_url"] == f"/sales/{sale['id']}/queue"
        assert "Join again" in expired["message"]
        alive = await _status(client, sale["id"], stays.headers)
        assert (alive["state"], alive["people_ahead"]) == ("waiting", 0)
        stats = await service.sale_stats(state, sale_id=sale["id"])
        assert (stats.queue_length, stats.abandoned) == (1, 1)
        # The head of the line is the live fan: admission goes straight to them.
        await service.set_rate(state, sale_id=sale["id"], data=RateSet(rate=100))

        async def admitted() -> bool:
            return (await _status(client, sale["id"], stays.headers))["state"] == "admitted"

        await tick_until(worker, admitted)
        rejoin = await client.post(f"/sales/{sale['id']}/queue", headers=gone.headers)
        assert rejoin.status_code == 201
        assert rejoin.json()["state"] == "waiting" and rejoin.json()["position"] == 3
        await worker.release_all()


async def test_leaving_frees_the_admission_slot_at_once(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with queue_app(settings) as (client, state):
        sale = await new_sale(
            client, admin_headers, opens_in=-1, max_active=1, initial_rate=100, max_rate=100
        )
        await service.open_sale(state, sale_id=sale["id"])
        first, second, third = await bulk_fans(state, settings, 3)
        for fan in (first, second, third):
            await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)
        worker = AdmissionWorker(state)

        async def state_of(fan: Any, wanted: str) -> bool:
            return (await _status(client, sale["id"], fan.headers))["state"] == wanted

        await tick_until(worker, lambda: state_of(first, "admitted"))
        for _ in range(3):
            await worker.tick()
        assert await state_of(second, "waiting")  # max_active = 1
        r = await client.delete(f"/sales/{sale['id']}/queue/me", headers=first.headers)
        assert r.status_code == 204
        assert (
            await client.delete(f"/sales/{sale['id']}/queue/me", headers=first.headers)
        ).status_code == 204
        r = await client.get(f"/sales/{sale['id']}/queue/me", headers=first.headers)
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
        assert r.json()["type"].endswith("/not-in-queue")
        await tick_until(worker, lambda: state_of(second, "admitted"))
        # A completed purchase ends the admission the same way (booking calls this).
        assert await service.release_admission(
            state, concert_id=sale["concert_id"], user_id=second.user_id
        )
        assert not await service.release_admission(
            state, sale_id=sale["id"], user_id=second.user_id
        )
        await tick_until(worker, lambda: state_of(third, "admitted"))
        stats = await service.sale_stats(state, sale_id=sale["id"])
        assert (stats.left, stats.completed, stats.admitted_total) == (1, 1, 3)
        await worker.release_all()


async def test_an_admitted_fan_who_never_comes_back_frees_the_slot(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with queue_app(settings, admission_arrival_s=1.0) as (client, state):
        sale = await new_sale(
            client, admin_headers, opens_in=-1, max_active=2, initial_rate=100, max_rate=100
        )
        sale_id = sale["id"]
        await service.open_sale(state, sale_id=sale_id)
        lazy, swept, present, booker = await bulk_fans(state, settings, 4)
        for fan in (lazy, swept, present):
            await client.post(f"/sales/{sale_id}/queue", headers=fan.headers)
        worker = AdmissionWorker(state)

        async def admitted_total(n: int) -> bool:
            return (await service.sale_stats(state, sale_id=sale_id)).admitted_total == n

        # The first two are let in while their tabs are closed: nobody collects the tokens.
        await tick_until(worker, lambda: admitted_total(2))
        assert (await _status(client, sale_id, present.headers))["state"] == "waiting"
        await asyncio.sleep(1.2)
        # A check after the window does not revive the admission...
        late = await _status(client, sale_id, lazy.headers)
        assert late["state"] == "expired" and late["reason"] == "admission_unclaimed"
        assert "did not come back" in late["message"] and late["rejoin_url"]
        # ...and the worker ends the other one: both slots go to the fan who is there.
        await tick_until(worker, lambda: admitted_total(3))
        gone = await _status(client, sale_id, swept.headers)
        assert (gone["state"], gone["reason"]) == ("expired", "admission_unclaimed")
        assert (await _status(client, sale_id, present.headers))["state"] == "admitted"
        # A fan who collected the token in time keeps the admission after the window.
        await client.post(f"/sales/{sale_id}/queue", headers=booker.headers)
        await tick_until(worker, lambda: admitted_total(4))
        # The booker collects it by booking with the token, without a status check.
        token = await state.redis.hget(
            service.store_of(state).keys(sale_id)[5], str(booker.user_id)
        )
        assert isinstance(token, bytes)
        claims = await service.verify_admission(
            state, token=token.decode(), concert_id=sale["concert_id"], user_id=booker.user_id
        )
        assert claims.sale_id == sale_id
        await asyncio.sleep(1.2)
        for _ in range(3):
            await worker.tick()
        assert (await _status(client, sale_id, present.headers))["state"] == "admitted"
        assert (await _status(client, sale_id, booker.headers))["state"] == "admitted"
        stats = await service.sale_stats(state, sale_id=sale_id)
        assert (stats.admission_unclaimed, stats.admission_expired) == (2, 0)
        assert stats.admitted_active == 2
        await worker.release_all()


async def test_an_admitted_fan_who_stops_booking_frees_the_slot(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with queue_app(settings, admission_arrival_s=6.0, admission_idle_s=3.0) as (
        client,
        state,
    ):
        sale = await new_sale(
            client, admin_headers, opens_in=-1, max_active=2, initial_rate=100, max_rate=100
        )
        sale_id = sale["id"]
        await service.open_sale(state, sale_id=sale_id)
        idler, booker, next_fan = await bulk_fans(state, settings, 3)
        for fan in (idler, booker, next_fan):
            await client.post(f"/sales/{sale_id}/queue", headers=fan.headers)
        worker = AdmissionWorker(state)

        async def admitted_total(n: int) -> bool:
            return (await service.sale_stats(state, sale_id=sale_id)).admitted_total == n

        await tick_until(worker, lambda: admitted_total(2))
        # Both come back for the token within the arrival window but after the idle time: the
        # idle clock starts at collection. Only the booker goes on to use the token.
        await asyncio.sleep(3.5)
        for _ in range(3):
            await worker.tick()
        idle = await _status(client, sale_id, idler.headers)
        shopping = await _status(client, sale_id, booker.headers)
        assert idle["state"] == shopping["state"] == "admitted"

        async def book_attempt() -> None:
            await service.verify_admission(
                state,
                token=shopping["admission_token"],
                concert_id=sale["concert_id"],
                user_id=booker.user_id,
            )

        await book_attempt()
        await asyncio.sleep(2.0)
        await book_attempt()  # restarts the booker's idle clock
        # Status checks are not booking attempts: they do not keep the idler's admission.
        assert (await _status(client, sale_id, idler.headers))["state"] == "admitted"
        await asyncio.sleep(1.5)
        await tick_until(worker, lambda: admitted_total(3))
        gone = await _status(client, sale_id, idler.headers)
        assert (gone["state"], gone["reason"]) == ("expired", "admission_idle")
        assert "did not use your turn" in gone["message"] and gone["rejoin_url"]
        assert (await _status(client, sale_id, booker.headers))["state"] == "admitted"
        assert (await _status(client, sale_id, next_fan.headers))["state"] == "admitted"
        # A booking attempt after the idle time is refused and does not revive the admission.
        await asyncio.sleep(3.2)
        with pytest.raises(AdmissionRevoked):
            await book_attempt()
        assert (await _status(client, sale_id, booker.headers))["reason"] == "admission_idle"
        stats = await service.sale_stats(state, sale_id=sale_id)
        assert (stats.admission_idle, stats.admission_expired, stats.admitted_total) == (2, 0, 3)
        await worker.release_all()


async def test_sale_closing_with_fans_still_queued(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with queue_app(settings) as (client, state):
        sale = await new_sale(client, admin_headers, opens_in=-1, closes_in=5, max_active=2)
        await service.open_sale(state, sale_id=sale["id"])
        fans = await bulk_fans(state, settings, 6)
        for fan in fans:
            await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)
        worker = AdmissionWorker(state)

        async def two_admitted() -> bool:
            return (await service.sale_stats(state, sale_id=sale["id"])).admitted_active == 2

        await tick_until(worker, two_admitted)
        admitted_token = (await _status(client, sale["id"], fans[0].headers))["admission_token"]

        async def closed() -> bool:
            return (await service.get_sale(state, sale_id=sale["id"])).status == "closed"

        await tick_until(worker, closed, timeout=8, pause=0.2)
        for fan in fans:  # admitted or waiting: everybody gets the same definite answer
            body = await _status(client, sale["id"], fan.headers)
            assert (body["state"], body["reason"]) == ("closed", "time")
            assert body["admission_token"] is None and body["poll_after_seconds"] is None
        row = await service.get_sale(state, sale_id=sale["id"])
        assert row.close_reason == CloseReason.time and row.closed_at is not None
        stats = await service.sale_stats(state, sale_id=sale["id"])
        assert (stats.queued_at_close, stats.admitted_active) == (4, 0)
        # Admissions were revoked with the close.
        with pytest.raises(AdmissionRevoked):
            await service.verify_admission(
                state,
                token=admitted_token,
                concert_id=sale["concert_id"],
                user_id=fans[0].user_id,
            )
        late = await client.post(f"/sales/{sale['id']}/queue", headers=fans[0].headers)
        assert late.status_code == 409 and late.headers["content-type"] == PROBLEM
        assert late.json()["state"] == "closed"


async def test_rate_limits_per_account_and_ip(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with queue_app(
        settings,
        queue_join_limit_per_account=3,
        queue_status_limit_per_account=5,
        queue_status_limit_per_ip=8,
    ) as (client, state):
        sale = await new_sale(client, admin_headers)
        fan, other = await bulk_fans(state, settings, 2)
        codes = [
            (await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)).status_code
            for _ in range(4)
        ]
        assert codes == [201, 200, 200, 429]
        statuses = [
            await client.get(f"/sales/{sale['id']}/queue/me", headers=fan.headers) for _ in range(6)
        ]
        limited = statuses[-1]
        assert [r.status_code for r in statuses] == [200] * 5 + [429]
        assert limited.headers["content-type"] == PROBLEM
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json()["retry_after"] == int(limited.headers["retry-after"])
        # Another account behind the same IP: the per-IP budget (8) is now the limit.
        await client.post(f"/sales/{sale['id']}/queue", headers=other.headers)
        other_codes = [
            (await client.get(f"/sales/{sale['id']}/queue/me", headers=other.headers)).status_code
            for _ in range(3)
        ]
        assert other_codes == [200, 200, 429]


def test_poll_advice_stays_inside_the_grace_period() -> None:
    for base in (0.0, 1.0, 25.0, 1e6, math.inf):
        advice = service._poll_after(30.0, 2.0, 12.0, base)
        assert 2.0 <= advice <= 4.0
        # A fan admitted right after a check notices within a quarter of the admission's life.
        short_admission = service._poll_after(60.0, 2.0, 600.0, base, admission_s=40.0)
        assert 2.0 <= short_admission <= 10.0


def test_poll_advice_near_the_head_stays_short_while_admission_pauses() -> None:
    # Admission paused (measured rate 0: unknown or huge ETA): the next in line still check often.
    assert service._poll_base(0, None, 10.0) == 0.1
    assert service._poll_base(4, 10**9, 10.0) == 0.5
    assert service._poll_base(40_000, None, 10.0) == 4000.1  # far back: the ceiling applies
    # A moving line: a quarter of the ETA when that is sooner.
    assert service._poll_base(1000, 20, 10.0) == 5.0
    # After the jitter (x0.8-1.2, floored at the shortest interval): seconds near the head, the
    # 45 s ceiling (a quarter of the 180 s admission) far back.
    for _ in range(50):
        near = service._poll_after(60.0, 2.0, 180.0, service._poll_base(3, 10**9, 10.0), 180.0)
        far = service._poll_after(60.0, 2.0, 180.0, service._poll_base(40_000, None, 10.0), 180.0)
        assert 2.0 <= near <= 2.4
        assert 36.0 <= far <= 45.0


def test_push_sends_small_moves_far_back_only_now_and_then() -> None:
    def at(ahead: int | None, state: str = "waiting") -> QueueStatus:
        return QueueStatus.model_validate(
            {
                "sale_id": 1,
                "state": state,
                "people_ahead": ahead,
                "position": 90_000,
                "message": "in line",
                "opens_at": "2026-12-03T10:00:00Z",
                "closes_at": "2026-12-03T12:00:00Z",
                "events_url": "/sales/1/queue/me/events",
            }
        )

    def sends(last: QueueStatus, update: QueueStatus, quiet_s: float = 1.0) -> bool:
        return push.worth_sending(last, update, quiet_s=quiet_s, every_s=10.0)

    assert not sends(at(50_000), at(50_000))  # nothing new
    assert not sends(at(50_000), at(49_700))  # a small move far back waits...
    assert sends(at(50_000), at(49_700), quiet_s=10.0)  # ...until the stream was quiet a while
    assert sends(at(50_000), at(48_900))  # a real move goes at once
    assert sends(at(120), at(99))  # near the head every move counts
    assert sends(at(50_000), at(50_000, "admitted"))  # a new state always goes
    assert sends(at(None, "pre_queue"), at(40_000))


def test_push_reads_fans_far_back_less_often() -> None:
    def waiting(eta: int | None, state: str = "waiting") -> QueueStatus:
        return QueueStatus.model_validate(
            {
                "sale_id": 1,
                "state": state,
                "eta_seconds": eta,
                "message": "in line",
                "opens_at": "2026-12-03T10:00:00Z",
                "closes_at": "2026-12-03T12:00:00Z",
                "events_url": "/sales/1/queue/me/events",
            }
        )

    def every(update: QueueStatus | None) -> float:
        return push.read_every(update, tick_s=1.0, slow_s=10.0)

    assert every(waiting(3)) == 1.0  # next in line: every tick
    assert every(waiting(40)) == 5.0
    assert every(waiting(3_000)) == 10.0  # far back: at most every slow_s
    assert every(waiting(None)) == every(waiting(None, "pre_queue")) == every(None) == 1.0


async def test_sold_out_closes_the_sale_and_tells_everyone(
    settings: Settings, admin_headers: dict[str, str], sim: Sim
) -> None:
    # Holds live 2 s here, so the wait for general-admission holds to come back is short.
    async with queue_app(
        settings, hold_ttl_s=2, payment_grace_s=0, admission_stock_check_s=0.1
    ) as (client, state):
        stock = await make_sale(client, admin_headers, rows=1, per_row=1, stock=1)
        sale = await new_sale(
            client,
            admin_headers,
            concert_id=stock.concert_id,
            opens_in=-1,
            max_active=2,
            initial_rate=100,
            max_rate=100,
        )
        await service.open_sale(state, sale_id=sale["id"])
        buyers = await bulk_fans(state, settings, 3)
        for fan in buyers:
            await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)
        worker = AdmissionWorker(state)

        async def two() -> bool:
            return (await service.sale_stats(state, sale_id=sale["id"])).admitted_active == 2

        await tick_until(worker, two)
        for fan, body in ((buyers[0], {"seat_ids": stock.seat_ids}), (buyers[1], {"quantity": 1})):
            token = (await _status(client, sale["id"], fan.headers))["admission_token"]
            headers = fan.headers | {"X-Admission-Token": token}
            held = await client.post(
                f"/concerts/{stock.concert_id}/bookings",
                json=body | {"strategy": "atomic"},  # synchronous: no consumer runs here
                headers=headers,
            )
            assert held.status_code == 201, held.text
            paid = await client.post(f"/bookings/{held.json()['id']}/pay", headers=headers)
            assert paid.json()["status"] == "confirmed", paid.text
            # What the booking route does once the purchase completed (idempotent).
            await service.release_admission(state, sale_id=sale["id"], user_id=fan.user_id)

        # Nothing free, general-admission holds may still come back: wait, do not admit.
        await asyncio.sleep(0.15)  # past the stock check interval: the worker sees the sales
        await worker.tick()
        await worker.tick()
        waiting = await _status(client, sale["id"], buyers[2].headers)
        assert waiting["state"] == "waiting" and "carts" in waiting["message"]
        stats = await service.sale_stats(state, sale_id=sale["id"])
        assert (stats.stock_state, stats.free_units, stats.admitted_active) == ("in_carts", 0, 0)

        async def closed() -> bool:
            return (await service.get_sale(state, sale_id=sale["id"])).status == "closed"

        await tick_until(worker, closed, timeout=10, pause=0.1)
        assert (await service.get_sale(state, sale_id=sale["id"])).close_reason == "sold_out"
        for fan in buyers:
            body = await _status(client, sale["id"], fan.headers)
            assert body["state"] == "sold_out" and body["poll_after_seconds"] is None
        late = await client.post(f"/sales/{sale['id']}/queue", headers=buyers[2].headers)
        assert late.status_code == 409 and late.json()["state"] == "sold_out"


async def test_the_edge_answers_join_and_status_like_the_documented_routes(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    """Join and status are served ahead of FastAPI's router (app/queue/edge.py): same bodies
    as the OpenAPI schema, the app's headers and problem+json, and everything it does not take
    (a malformed id, other methods) still reaches the routes."""
    async with queue_app(settings) as (client, state):
        sale = await new_sale(client, admin_headers, opens_in=-1)
        sid = sale["id"]
        await service.open_sale(state, sale_id=sid)
        [fan] = await bulk_fans(state, settings, 1)
        joined = await client.post(f"/sales/{sid}/queue", headers=fan.headers)
        assert joined.status_code == 201
        assert joined.headers["content-type"] == "application/json"
        assert joined.headers["cache-control"] == "no-store"
        assert joined.headers["x-content-type-options"] == "nosniff"
        assert len(joined.headers["x-request-id"]) == 32
        assert QueueStatus.model_validate(joined.json()).state == "waiting"
        again = await client.post(f"/sales/{sid}/queue", headers=fan.headers)
        assert again.status_code == 200 and again.json()["position"] == joined.json()["position"]
        status = await client.get(f"/sales/{sid}/queue/me", headers=fan.headers)
        assert status.status_code == 200 and status.headers["cache-control"] == "no-store"
        assert QueueStatus.model_validate(status.json()).position == joined.json()["position"]
        # Refusals are the app's problems, with the same types as from a route.
        for headers, code, kind in [
            ({}, 401, "/invalid-token"),
            ({"Authorization": "Basic abc"}, 401, "/invalid-token"),
            ({"Authorization": "Bearer not-a-jwt"}, 401, "/invalid-token"),
        ]:
            r = await client.post(f"/sales/{sid}/queue", headers=headers)
            assert (r.status_code, r.headers["content-type"]) == (code, PROBLEM), r.text
            assert r.json()["type"].endswith(kind) and r.json()["instance"] == f"/sales/{sid}/queue"
        missing = await client.get("/sales/999999999/queue/me", headers=fan.headers)
        assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
        # Not the edge's: FastAPI validates the id and routes the other methods.
        for path in ("/sales/0/queue", f"/sales/{2**63}/queue", "/sales/x/queue"):
            r = await client.post(path, headers=fan.headers)
            assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM), path
        assert (await client.put(f"/sales/{sid}/queue", headers=fan.headers)).status_code == 405
        left = await client.delete(f"/sales/{sid}/queue/me", headers=fan.headers)
        assert left.status_code == 204
        gone = await client.get(f"/sales/{sid}/queue/me", headers=fan.headers)
        assert gone.status_code == 404


def test_stock_cap_keeps_the_end_of_a_sell_out_moving() -> None:
    assert stock_cap(0, 1.5, 20) == 0  # all in carts: wait, admit nobody
    assert stock_cap(1, 1.5, 20) == 21  # the last seat: a couple of no-shows cannot stall it
    assert stock_cap(1, 1.5, 0) == 2
    assert stock_cap(1000, 1.5, 20) == 1500  # mid-sale the ratio rules
    assert all(stock_cap(n, 1.5, 20) >= n for n in range(0, 5000, 7))
