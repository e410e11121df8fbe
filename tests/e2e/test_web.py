"""The web app in real headless Chromium against the whole stack: a fan's purchase through the
waiting room (with a lost seat race against a second fan), two fans chatting beside a live HLS
stream published by ffmpeg, and the organizer's sale pages. Every step leaves a screenshot in
reports/e2e/."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Page, expect

from app.core.redis import Keys
from tests.conftest import PASSWORD, unique_email
from tests.e2e.conftest import Account, Fans, Stack, new_fan, shot, tag
from tests.fixtures.payments import Sim
from tests.streaming.conftest import publish


@pytest.fixture
async def api(e2e_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=e2e_stack.url, timeout=30) as client:
        yield client


async def ok(response: Awaitable[httpx.Response], status: int = 200) -> Any:
    r = await response
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def make_concert(
    api: httpx.AsyncClient, admin: Account, *, artist: str, title: str
) -> dict[str, Any]:
    """An on-sale concert with a two-section seat map."""
    h = admin.headers
    agency = await ok(
        api.post("/agencies", json={"name": f"Starlight {tag()}", "country": "KR"}, headers=h),
        201,
    )
    star = await ok(
        api.post("/artists", json={"agency_id": agency["id"], "name": artist}, headers=h), 201
    )
    venue = await ok(
        api.post(
            "/venues",
            json={
                "name": f"Olympic Hall {tag()}",
                "city": "Seoul",
                "country": "KR",
                "capacity": 5000,
            },
            headers=h,
        ),
        201,
    )
    starts = (datetime.now(UTC) + timedelta(days=30)).replace(hour=19, minute=0, second=0)
    concert = await ok(
        api.post(
            "/concerts",
            json={
                "title": title,
                "artist_id": star["id"],
                "venue_id": venue["id"],
                "starts_at": starts.isoformat(),
                "max_tickets_per_user": 2,
            },
            headers=h,
        ),
        201,
    )
    await ok(
        api.post(
            f"/concerts/{concert['id']}/seats:generate",
            json={
                "sections": [
                    {"name": "Floor", "rows": 3, "seats_per_row": 14, "price": 154_000},
                    {"name": "Balcony", "rows": 2, "seats_per_row": 14, "price": 99_000},
                ]
            },
            headers=h,
        ),
        201,
    )
    await ok(api.patch(f"/concerts/{concert['id']}", json={"status": "on_sale"}, headers=h))
    return dict(concert)


async def new_sale(
    api: httpx.AsyncClient, admin: Account, concert_id: int, *, opens_in: float, rate: float
) -> dict[str, Any]:
    now = datetime.now(UTC)
    sale = await ok(
        api.post(
            "/sales",
            json={
                "concert_id": concert_id,
                "opens_at": (now + timedelta(seconds=opens_in)).isoformat(),
                "closes_at": (now + timedelta(minutes=20)).isoformat(),
                "max_active": 50,
                "initial_rate": rate,
                "min_rate": 0.5,
                "max_rate": 50,
            },
            headers=admin.headers,
        ),
        201,
    )
    # Pinned: the backpressure controller would otherwise move it while the test watches.
    await ok(
        api.put(
            f"/sales/{sale['id']}/rate",
            json={"rate": rate, "mode": "manual"},
            headers=admin.headers,
        )
    )
    return dict(sale)


async def number(page: Page, testid: str) -> int | None:
    text = (await page.get_by_test_id(testid).text_content() or "").strip()
    return int(text) if text.isdigit() else None


async def until(check: Callable[[], Awaitable[Any]], *, timeout: float = 60, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def user_id_of(page: Page) -> int:
    return int(
        await page.evaluate(
            "JSON.parse(atob(JSON.parse(localStorage.getItem('tr.auth')).access_token"
            ".split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub"
        )
    )


def seat_button(page: Page, seat_id: int) -> Any:
    return page.locator(f'button.seat[data-seat-id="{seat_id}"]')


async def test_fan_queues_loses_a_seat_race_and_buys_a_ticket(
    e2e_stack: Stack, admin: Account, fans: Fans, api: httpx.AsyncClient, sim: Sim
) -> None:
    concert = await make_concert(api, admin, artist="NOVA", title="NOVA World Tour: Seoul")
    cid = concert["id"]

    # 1. A signs up and logs in through the pages.
    fan = await fans.page()
    await fan.goto("/#/signup")
    await fan.get_by_label("Display name").fill("Mina")
    await fan.get_by_label("Email").fill(unique_email("mina"))
    await fan.get_by_label("Password").fill(PASSWORD)
    await shot(fan, "01-signup")
    await fan.get_by_role("button", name="Create account").click()
    await expect(fan.get_by_role("heading", name="Concerts on sale")).to_be_visible()
    # The worker's database holds other tests' concerts too: find this one as a fan would.
    await fan.get_by_role("searchbox", name="Search concerts").fill("nova world")
    await fan.keyboard.press("Enter")
    await expect(fan).to_have_url(re.compile(r"#/\?q=nova%20world$"))
    await expect(fan.get_by_role("link", name="NOVA World Tour: Seoul")).to_be_visible()
    await shot(fan, "02-concerts")
    fan_id = await user_id_of(fan)

    # 2. A scheduled sale; five fans and a rival (B) join its pre-queue with A. The organizer
    # opens it below (as "Open now" does), so no step races the opening time.
    fillers = [await new_fan(e2e_stack) for _ in range(5)]
    rival_account = await new_fan(e2e_stack, "Rival")
    sale = await new_sale(api, admin, cid, opens_in=120, rate=0.5)
    sid = sale["id"]
    for filler in fillers:
        await ok(api.post(f"/sales/{sid}/queue", headers=filler.headers), 201)
    rival = await fans.page(rival_account)
    await rival.goto(f"/#/sales/{sid}")
    await fan.goto(f"/#/sales/{sid}")
    await expect(fan.get_by_test_id("eta")).to_contain_text("opens in")
    await expect(fan.get_by_role("status").filter(has_text="open")).to_be_visible()
    await shot(fan, "03-pre-queue")
    # The draw at open is random (secret keys in [0, 1)); pin the rival and then A last, so A
    # has fans ahead to watch.
    redis = aioredis.Redis.from_url(e2e_stack.settings.redis_url)
    prequeue = Keys(e2e_stack.settings.redis_prefix)(f"{{sale:{sid}}}", "prequeue")
    try:
        await until(lambda: redis.zscore(prequeue, str(fan_id)), what="A in the pre-queue")
        await until(
            lambda: redis.zscore(prequeue, str(rival_account.user_id)), what="B in the pre-queue"
        )
        assert await redis.zadd(prequeue, {str(rival_account.user_id): 2.0}, xx=True, ch=True)
        assert await redis.zadd(prequeue, {str(fan_id): 3.0}, xx=True, ch=True)
    finally:
        await redis.aclose()
    await ok(api.post(f"/sales/{sid}:open", headers=admin.headers))

    # 3. At open A gets number 7 with 6 ahead, and watches the line move without reloading.
    position = await until(lambda: number(fan, "position"), timeout=40, what="a drawn place")
    assert position == 7
    first_ahead = await number(fan, "ahead")
    assert first_ahead is not None and first_ahead > 1
    moved = await until(lambda: _lower(fan, first_ahead), timeout=40, what="the line to move")
    await shot(fan, "04-queue-moving")
    # A reload keeps the place: same number, no new place at the back.
    await fan.reload()
    await until(lambda: number(fan, "position"), what="the place after reload")
    assert await number(fan, "position") == position
    ahead_now = await number(fan, "ahead")
    assert ahead_now is None or ahead_now <= moved
    choose = fan.get_by_test_id("choose-seats")
    await expect(choose).to_be_visible(timeout=60_000)
    await expect(choose).to_be_focused()  # keyboard users land on the next step
    await expect(fan.get_by_role("progressbar")).to_have_attribute("value", "100")
    await shot(fan, "05-admitted")
    await expect(rival.get_by_test_id("choose-seats")).to_be_visible(timeout=60_000)

    # 4. Both pick the same seat; the rival holds it first, A gets the clear "seat taken".
    seats = (await ok(api.get(f"/concerts/{cid}/seats", params={"limit": 1000})))["items"]
    summary = await ok(api.get(f"/concerts/{cid}/availability"))
    floor = next(s["section_id"] for s in summary["sections"] if s["name"] == "Floor")
    floor_a = sorted(
        (s for s in seats if s["section_id"] == floor and s["row_label"] == "A"),
        key=lambda s: s["number"],
    )
    contested, other = floor_a[0]["id"], floor_a[1]["id"]
    await fan.keyboard.press("Enter")
    await rival.get_by_test_id("choose-seats").click()
    await expect(seat_button(fan, contested)).to_be_enabled()
    # A's map is a few seconds stale (it refreshes every 3 s): freeze it so the rival's hold
    # cannot reach it before A clicks.
    seat_list = re.compile(r"/concerts/\d+/seats\?")
    await fan.route(seat_list, lambda route: route.abort())
    await seat_button(fan, contested).click()
    await seat_button(rival, contested).click()
    await rival.get_by_test_id("hold").click()
    await expect(rival.get_by_test_id("countdown")).to_be_visible()
    await fan.get_by_test_id("hold").click()
    await expect(fan.get_by_role("alert")).to_contain_text("another fan just took that seat")
    await fan.unroute(seat_list)
    await expect(seat_button(fan, contested)).to_have_attribute("data-status", "held")
    await expect(seat_button(fan, contested)).to_be_disabled()
    await shot(fan, "06-seat-taken")

    # 5. Another seat, by keyboard: held with a countdown, paid, ticket shown.
    await seat_button(fan, other).focus()
    await fan.keyboard.press("Space")
    await expect(seat_button(fan, other)).to_have_attribute("aria-pressed", "true")
    await fan.get_by_test_id("hold").focus()
    await fan.keyboard.press("Enter")
    await expect(fan.get_by_test_id("countdown")).to_have_text(re.compile(r"\d+ min \d+ s|\d+ s"))
    await expect(fan.get_by_role("heading", name="Seats on hold")).to_be_visible()
    await shot(fan, "07-hold-countdown")
    # The card is declined once: a clear message, the hold stays, paying again works.
    await sim.control(decline_rate=1)
    await expect(fan.get_by_test_id("pay")).to_be_focused()
    await fan.keyboard.press("Enter")
    await expect(fan.get_by_role("alert")).to_contain_text("Your payment was declined")
    await expect(fan.get_by_test_id("pay")).to_be_enabled()
    await shot(fan, "08-payment-declined")
    await sim.control(decline_rate=0)
    await fan.get_by_test_id("pay").click()
    ticket = fan.get_by_test_id("ticket")
    await expect(ticket).to_contain_text("Ticket code")
    await expect(ticket).to_contain_text("Floor row A seat 2")
    await shot(fan, "09-ticket")
    await fan.get_by_role("link", name="My tickets").first.click()
    await expect(fan.get_by_test_id("booking")).to_contain_text("confirmed")
    await shot(fan, "10-my-tickets")

    # The API agrees: A owns a confirmed ticket for the other seat, the rival holds the first.
    token = await fan.evaluate("JSON.parse(localStorage.getItem('tr.auth')).access_token")
    mine = await ok(api.get("/users/me/bookings", headers={"Authorization": f"Bearer {token}"}))
    assert [(b["status"], b["seat_ids"]) for b in mine["items"]] == [("confirmed", [other])]
    assert len(mine["items"][0]["tickets"]) == 1
    theirs = (await ok(api.get("/users/me/bookings", headers=rival_account.headers)))["items"]
    assert [(b["status"], b["seat_ids"]) for b in theirs] == [("held", [contested])]
    assert not [line for line in fans.console if "pageerror" in line], fans.console


async def buy(
    api: httpx.AsyncClient, fan: Account, sale_id: int, concert_id: int, seat_id: int
) -> None:
    status = await ok(api.get(f"/sales/{sale_id}/queue/me", headers=fan.headers))
    assert status["state"] == "admitted", status
    headers = fan.headers | {"X-Admission-Token": status["admission_token"]}
    accepted = await ok(
        api.post(f"/concerts/{concert_id}/bookings", json={"seat_ids": [seat_id]}, headers=headers),
        202,
    )

    async def held() -> Any:
        r = await ok(api.get(f"/bookings/requests/{accepted['request_id']}", headers=fan.headers))
        return r if r["status"] != "pending" else None

    outcome = await until(held, timeout=30, what="the booking consumer's answer")
    assert outcome["status"] == "held", outcome
    paid = await ok(api.post(f"/bookings/{outcome['booking_id']}/pay", headers=fan.headers))
    assert paid["status"] == "confirmed"


async def _lower(page: Page, than: int) -> int | None:
    ahead = await number(page, "ahead")
    return ahead if ahead is not None and ahead < than else None


async def test_two_fans_chat_beside_a_live_stream(
    e2e_stack: Stack, admin: Account, fans: Fans, api: httpx.AsyncClient
) -> None:
    concert = await make_concert(api, admin, artist="LUMEN", title="LUMEN Live in Busan")
    channel = await ok(
        api.post(
            "/channels",
            json={"artist_id": concert["artist"]["id"], "title": "LUMEN soundcheck"},
            headers=admin.headers,
        ),
        201,
    )
    ffmpeg = publish(e2e_stack.ingest, channel["stream_key"], seconds=60)
    try:
        alice = await fans.page(await new_fan(e2e_stack, "Alice"))
        bob = await fans.page(await new_fan(e2e_stack, "Bob"))
        for page in (alice, bob):
            await page.goto(f"/#/concerts/{concert['id']}")
            await expect(page.get_by_text("Connected.")).to_be_visible()
        await alice.get_by_role("textbox", name="Your message").fill("Who else is here for LUMEN?")
        await alice.get_by_role("button", name="Send").click()
        await expect(bob.get_by_role("list", name="Messages")).to_contain_text(
            "Who else is here for LUMEN?"
        )
        await bob.get_by_role("textbox", name="Your message").fill("Me! Front row hopefully")
        await bob.get_by_role("button", name="Send").click()
        await expect(alice.get_by_role("list", name="Messages")).to_contain_text(
            "Me! Front row hopefully"
        )
        await expect(alice.get_by_role("list", name="Messages")).to_contain_text(
            "You: Who else is here"
        )

        # The player appears once the channel is LIVE and really plays (time advances).
        await expect(alice.locator("video")).to_be_visible(timeout=40_000)
        await expect(alice.locator(".badge")).to_have_text("LIVE")
        playing = await until(
            lambda: alice.evaluate(
                "(() => { const v = document.querySelector('video');"
                " return v && v.readyState >= 2 && v.currentTime > 1.5 && !v.paused"
                " ? v.currentTime : 0; })()"
            ),
            timeout=45,
            what="the HLS stream to play",
        )
        assert playing > 1.5
        await expect(alice.get_by_role("status").filter(has_text="watching")).to_be_visible()
        await alice.get_by_role("heading", name="Fan room").scroll_into_view_if_needed()
        await alice.evaluate("window.scrollBy(0, 250)")
        await shot(alice, "11-chat-and-live-player")
        await shot(bob, "12-chat-second-fan")
        # The artist's page carries the same player beside the artist's own room.
        await bob.get_by_role("link", name="LUMEN").first.click()
        await expect(bob.get_by_role("heading", name="LUMEN", exact=True)).to_be_visible()
        await expect(bob.get_by_role("link", name="LUMEN Live in Busan")).to_be_visible()
        await expect(bob.locator(".badge")).to_have_text("LIVE", timeout=20_000)
        await expect(bob.get_by_text("Connected.")).to_be_visible()
        assert not [line for line in fans.console if "pageerror" in line], fans.console
    finally:
        ffmpeg.kill()
        ffmpeg.wait()


async def test_organizer_creates_opens_and_watches_a_sale(
    e2e_stack: Stack, admin: Account, fans: Fans, api: httpx.AsyncClient
) -> None:
    concert = await make_concert(api, admin, artist="AURORA", title="AURORA Fan Meeting")
    page = await fans.page()
    await page.goto("/#/login?next=/organizer")
    await page.get_by_label("Email").fill(admin.email)
    await page.get_by_label("Password").fill(admin.password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Create a sale")).to_be_visible()
    await page.get_by_label("Concert").select_option(str(concert["id"]))
    await page.get_by_label("Admission rate (fans/s)").fill("2")
    await page.get_by_label("Minimum rate").fill("1")
    await shot(page, "13-organizer-create-sale")
    await page.get_by_role("button", name="Create sale").click()
    await expect(page.get_by_role("heading", name=re.compile(r"Sale #\d+"))).to_be_visible()
    sid = int(page.url.rsplit("/", 1)[1])
    crowd = [await new_fan(e2e_stack) for _ in range(8)]
    for filler in crowd:
        await ok(api.post(f"/sales/{sid}/queue", headers=filler.headers), 201)
    await expect(page.get_by_test_id("pre_queue")).to_have_text("8")
    await page.get_by_role("button", name="Open now").click()
    await expect(page.locator("#notice")).to_contain_text("Sale open")
    await page.get_by_label("Rate (fans/s)").fill("3")
    await page.get_by_role("button", name="Set rate").click()
    await expect(page.locator("#notice")).to_contain_text("Rate set to 3 fans/s (manual)")
    await expect(page.get_by_test_id("admitted_total")).to_have_text("8", timeout=30_000)
    await expect(page.get_by_test_id("queue_length")).to_have_text("0")
    await expect(page.get_by_test_id("current_rate")).to_have_text("3")
    # Three admitted fans buy a seat each (through the Kafka pipeline): the view counts them.
    seats = (await ok(api.get(f"/concerts/{concert['id']}/seats", params={"limit": 3})))["items"]
    for buyer, seat in zip(crowd, seats, strict=False):
        await buy(api, buyer, sid, concert["id"], seat["id"])
    await expect(page.get_by_test_id("sold")).to_have_text("3", timeout=30_000)
    await asyncio.sleep(2.5)  # one more poll, so the charts show the line after the draw
    await shot(page, "14-organizer-live-sale", full_page=True)
    await page.get_by_role("button", name="Close now").click()
    await expect(page.get_by_test_id("current_rate")).to_be_visible()
    await expect(page.get_by_role("status").filter(has_text="Status: closed")).to_be_visible()
    stats = await ok(api.get(f"/sales/{sid}/stats", headers=admin.headers))
    assert stats["status"] == "closed" and stats["admitted_total"] == 8
    assert stats["consumer_lag"] is not None  # the session's booking consumer reports it
    assert not [line for line in fans.console if "pageerror" in line], fans.console
