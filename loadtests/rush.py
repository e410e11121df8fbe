"""A ticket rush against a running stack: virtual fans, measurements, and the invariants.

Used by `make demo` (loadtests/demo.py) and `make bench-spike`. Fans are asyncio tasks sharing
one aiohttp session (aiohttp spends less client CPU per request than httpx; on a 2-core machine
the generator shares the cores with the system under test). Each fan behaves like a person:
- arrives before the sale opens (pre-queue) or in the spike after it, joins the queue;
- follows the server's poll advice, or listens on the SSE push channel, or walks away
  (abandons) and comes back at the end to see what became of the place; some refresh the page
  (join again), which must give them the same place;
- once admitted: looks at available seats, claims 1-4 adjacent ones through the booking route
  (202 from the Kafka pipeline, then the outcome from `GET /bookings/requests/{id}`), retries on
  "seat taken", pays (the simulator declines some payments; a declined fan retries once, then
  cancels); a few never book, a few leave their hold to expire.
Every fan ends with a recorded final answer; `verify` checks the database and the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.booking.messages import REQUESTS_TOPIC, RESULTS_TOPIC
from app.core.config import Settings
from app.core.security import hash_password, issue_access_token

# Answers a fan can end with. Everything else is "unanswered" and fails the run.
FINAL_ANSWERS = (
    "ticket",
    "sold_out",
    "closed",
    "expired",
    "payment_declined",
    "hold_expired",
    "walked_away_admitted",
)
PASSWORD = "virtual-fan-password"
SHOPPING = frozenset({"seats", "book", "outcome", "pay", "cancel", "leave"})
# What a checkout API serves when there is one (leaving the line is the waiting room's).
CHECKOUT = SHOPPING - {"leave"}


@dataclass(frozen=True)
class RushConfig:
    fans: int = 50_000
    seats: int = 5_000
    opens_in_s: float = 12.0  # the pre-queue is open this long before the sale
    early_share: float = 0.3  # fans who arrive before the sale opens
    spike_mean_s: float = 8.0  # later arrivals: exponential after open, this mean
    spike_max_s: float = 40.0
    # Fans on the SSE push channel (the web page uses it) instead of polling. Bounded by the
    # generator: one process may hold 20,000 connections on these machines (RLIMIT_NOFILE).
    listen_share: float = 0.3
    abandon_share: float = 0.08  # join, check once or twice, walk away
    refresh_share: float = 0.1  # pollers who reload the page (join again) once
    no_book_share: float = 0.03  # admitted fans who never book
    hold_abandon_share: float = 0.03  # admitted fans who hold and never pay
    max_active: int = 1500
    initial_rate: float = 150.0
    min_rate: float = 20.0
    max_rate: float = 600.0
    deadline_s: float = 240.0  # the rush must be over by then (after open)
    in_flight: int = 256  # concurrent non-streaming requests of the generator
    seed: int = 7
    # A fan whose place or admission vanished (a Redis loss, see app/queue/store.py) joins
    # again, as the page tells them to, at most this many times; 0 takes the loss as the answer.
    rejoins: int = 0


@dataclass
class Sample:
    t: float  # seconds since open
    queue_length: int
    pre_queue: int
    admitted_active: int
    admitted_total: int
    rate: float
    measured_rate: float | None
    sold: int
    status: str


@dataclass
class Recorder:
    """Latency per request kind per second since open, and status counts."""

    opens_at: float  # monotonic
    latencies: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # Server errors by (request kind, status, problem type): a 5xx must be problem+json.
    problems: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    requests: int = 0

    def record(self, kind: str, started: float, status: int) -> None:
        now = time.monotonic()
        self.latencies[kind].append((now - self.opens_at, (now - started) * 1000))
        self.statuses[(kind, status)] += 1
        self.requests += 1


@dataclass
class FanResult:
    user_id: int
    answer: str | None = None
    position: int | None = None
    refresh_kept_place: bool | None = None
    tickets: int = 0
    mode: str = "poll"
    # (request id, seconds since open) of each 202, and the bookings paid for: what the
    # platform acknowledged to this fan, so a fault test can look for each one in the database.
    accepted: list[tuple[str, float]] = field(default_factory=list)
    confirmed_bookings: list[int] = field(default_factory=list)
    rejoined: int = 0  # times the fan joined again after losing the place (cfg.rejoins)


@dataclass
class RushOutcome:
    config: RushConfig
    concert_id: int
    sale_id: int
    fans: list[FanResult]
    samples: list[Sample]
    recorder: Recorder
    started_wall: datetime
    sold_out_after_s: float | None
    finished_after_s: float
    kafka_before: dict[str, int]
    checks: dict[str, Any] = field(default_factory=dict)
    checkout_url: str | None = None  # where admitted fans shopped, when not the main API


def _problem_type(response: aiohttp.ClientResponse, body: bytes) -> str:
    if response.content_type != "application/problem+json":
        return f"not problem+json ({response.content_type})"
    try:
        return str(json.loads(body).get("type", "no type"))
    except ValueError:
        return "malformed problem+json"


class Api:
    """The generator's HTTP client: bounded in-flight requests, every call timed."""

    def __init__(
        self, base_url: str, recorder: Recorder, in_flight: int, checkout_url: str | None = None
    ) -> None:
        self.base_url = base_url
        self.recorder = recorder
        self.gate = asyncio.Semaphore(in_flight)
        # Shoppers get their own share: in a real rush each buyer's browser has its own
        # connection, so their requests must not queue behind the crowd's polls in this one
        # generator (they still queue behind them in the server).
        self.shop_gate = asyncio.Semaphore(max(8, in_flight // 2))
        self.active = 0  # requests on the wire right now
        self.session = aiohttp.ClientSession(
            base_url,
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, force_close=False),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        self.checkout = (
            aiohttp.ClientSession(
                checkout_url,
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, force_close=False),
                timeout=aiohttp.ClientTimeout(total=30),
            )
            if checkout_url
            else self.session
        )

    async def close(self) -> None:
        await self.session.close()
        await self.checkout.close()

    async def call(
        self, kind: str, method: str, path: str, *, headers: dict[str, str], json_body: Any = None
    ) -> tuple[int, Any, dict[str, str]]:
        """One request as a well-behaved client makes it: a dropped connection is retried, and
        429/503 are retried after their Retry-After (bounded); every attempt is counted."""
        for attempt in range(12):
            gate = self.shop_gate if kind in SHOPPING else self.gate
            try:
                async with gate:
                    # Timed from here: waiting for the generator's own gate is not the server's.
                    started = time.monotonic()
                    self.active += 1
                    try:
                        session = self.checkout if kind in CHECKOUT else self.session
                        async with session.request(
                            method, path, headers=headers, json=json_body
                        ) as r:
                            body = await r.read()
                            self.recorder.record(kind, started, r.status)
                            status, answer = r.status, dict(r.headers)
                            if status >= 500:
                                self.recorder.problems[(kind, status, _problem_type(r, body))] += 1
                    finally:
                        self.active -= 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.recorder.errors[f"{kind}: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            if status in (429, 503) and attempt < 11:
                self.recorder.errors[f"{kind}: {status}, retried"] += 1
                await asyncio.sleep(min(10.0, float(answer.get("Retry-After") or 1)))
                continue
            return status, json.loads(body) if body else None, answer
        raise RuntimeError(f"{kind} {method} {path}: no answer after 12 attempts")


# --- setup -----------------------------------------------------------------------------------


async def create_accounts(
    engine: AsyncEngine, settings: Settings, n: int, role: str
) -> list[tuple[int, str]]:
    """`n` accounts in one statement (one Argon2 hash for all: signing up 50,000 fans through
    the API would spend the whole demo hashing passwords), each with a real access token."""
    tag = uuid.uuid4().hex[:8]
    async with engine.begin() as conn:
        rows = await conn.execute(
            text(
                "INSERT INTO app_user (email, password_hash, display_name, role)"
                " SELECT 'rush-' || :tag || '-' || g || '@example.com', :h, 'Fan ' || g, :role"
                " FROM generate_series(1, :n) g RETURNING id"
            ),
            {"tag": tag, "h": hash_password(PASSWORD), "n": n, "role": role},
        )
        ids = [r[0] for r in rows]
    return [(i, issue_access_token(settings, user_id=i, role=role)[0]) for i in ids]


def _sections(seats: int) -> list[dict[str, Any]]:
    """Sections of 20 rows x 25 seats; the last one takes the remainder."""
    per_section = 500
    specs = []
    left = seats
    prices = (165_000, 143_000, 132_000, 121_000, 99_000)
    i = 0
    while left > 0:
        n = min(per_section, left)
        rows = max(1, n // 25)
        per_row = n // rows
        extra = n - rows * per_row
        specs.append(
            {
                "name": f"Floor {chr(65 + i)}",
                "rows": rows,
                "seats_per_row": per_row,
                "price": prices[i % len(prices)],
            }
        )
        if extra:
            specs.append(
                {
                    "name": f"Box {chr(65 + i)}",
                    "rows": 1,
                    "seats_per_row": extra,
                    "price": prices[i % len(prices)],
                }
            )
        left -= n
        i += 1
    return specs


async def setup_sale(api: Api, admin: dict[str, str], cfg: RushConfig) -> tuple[int, int, float]:
    """Agency → artist → venue → concert with `cfg.seats` seats, and a sale opening soon.
    Returns (concert id, sale id, opens_at as Unix time)."""
    tag = uuid.uuid4().hex[:6]

    async def post(kind: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, data, _ = await api.call("setup", "POST", path, headers=admin, json_body=body)
        if status != 201:
            raise RuntimeError(f"setup {kind}: {status} {data}")
        return dict(data)

    agency = await post("agency", "/agencies", {"name": f"Rush Entertainment {tag}"})
    artist = await post("artist", "/artists", {"agency_id": agency["id"], "name": f"NOVA {tag}"})
    venue = await post(
        "venue",
        "/venues",
        {"name": f"Olympic Dome {tag}", "city": "Seoul", "country": "KR", "capacity": cfg.seats},
    )
    starts = datetime.now(UTC) + timedelta(days=30)
    concert = await post(
        "concert",
        "/concerts",
        {
            "title": f"NOVA World Tour - Seoul {tag}",
            "artist_id": artist["id"],
            "venue_id": venue["id"],
            "starts_at": starts.isoformat(),
            "max_tickets_per_user": 4,
        },
    )
    await post(
        "seats", f"/concerts/{concert['id']}/seats:generate", {"sections": _sections(cfg.seats)}
    )
    opens = datetime.now(UTC) + timedelta(seconds=cfg.opens_in_s)
    sale = await post(
        "sale",
        "/sales",
        {
            "concert_id": concert["id"],
            "opens_at": opens.isoformat(),
            "closes_at": (opens + timedelta(minutes=30)).isoformat(),
            "max_active": cfg.max_active,
            "initial_rate": cfg.initial_rate,
            "min_rate": cfg.min_rate,
            "max_rate": cfg.max_rate,
        },
    )
    return int(concert["id"]), int(sale["id"]), opens.timestamp()


# --- the fans --------------------------------------------------------------------------------


class SeatView:
    """The seat map as the fans' pages show it: the available seats by row, at most a few
    seconds old. The web page re-reads the map every 3 s; here one copy is re-read for all
    fans (as a CDN would serve one), so a fan clicks seats that were free a moment ago and
    loses only real races, not to a map that is minutes stale."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows

    async def refresh_forever(
        self, api: Api, concert_id: int, headers: dict[str, str], stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            await asyncio.sleep(2.0)
            with contextlib.suppress(RuntimeError, KeyError):
                self.rows = await self._read(api, concert_id, headers)

    @staticmethod
    async def _read(api: Api, concert_id: int, headers: dict[str, str]) -> list[list[int]]:
        rows: dict[tuple[int, str], list[int]] = defaultdict(list)
        cursor = ""
        while True:
            path = f"/concerts/{concert_id}/seats?status=available&limit=1000{cursor}"
            status, page, _ = await api.call("seats", "GET", path, headers=headers)
            if status != 200:
                raise RuntimeError(f"seat map: {status}")
            for seat in page["items"]:
                rows[(seat["section_id"], seat["row_label"])].append(seat["id"])
            if not page.get("next_cursor"):
                return [sorted(row) for row in rows.values()]
            cursor = f"&cursor={page['next_cursor']}"


@dataclass
class Shared:
    api: Api
    cfg: RushConfig
    concert_id: int
    sale_id: int
    seat_view: SeatView
    opens_mono: float
    stop: asyncio.Event
    rng: random.Random


def _sale_over(status: int, data: Any) -> str | None:
    """The sale's end as a join answers it (409 sale-closed, with the state), else None."""
    if status == 409 and isinstance(data, dict) and data.get("state") in ("sold_out", "closed"):
        return str(data["state"])
    return None


class VirtualFan:
    def __init__(self, shared: Shared, user_id: int, token: str, rng: random.Random) -> None:
        self.s = shared
        self.rng = rng
        self.headers = {"Authorization": f"Bearer {token}"}
        self.result = FanResult(user_id)
        self.rejoins_left = shared.cfg.rejoins

    @property
    def queue(self) -> str:
        return f"/sales/{self.s.sale_id}/queue"

    async def run(self, arrive_at: float, mode: str) -> None:
        try:
            await self._run(arrive_at, mode)
        except Exception as exc:  # the fan got no usable answer: recorded, never hidden
            self.result.answer = f"error: {type(exc).__name__}"
            self.s.api.recorder.errors[f"fan error: {str(exc)[:120]}"] += 1

    async def _run(self, arrive_at: float, mode: str) -> None:
        self.result.mode = mode
        await asyncio.sleep(max(0.0, arrive_at - time.monotonic()))
        status, data, _ = await self.s.api.call("join", "POST", self.queue, headers=self.headers)
        if (over := _sale_over(status, data)) is not None:
            self.result.answer = over  # arrived after the end: told so at once
            return
        if status not in (200, 201):
            raise RuntimeError(f"join: {status} {data}")
        if mode == "abandon":
            await self._abandon(data)
            return
        if mode == "listen":
            data = await self._listen(data)
        refresh_after = (
            time.monotonic() + self.rng.uniform(3, 20)
            if mode == "poll" and self.rng.random() < self.s.cfg.refresh_share
            else None
        )
        while True:
            state = data["state"]
            if data.get("position") is not None:
                self.result.position = data["position"]
            if state == "admitted":
                if await self._shop(data["admission_token"]) and self._may_rejoin():
                    data = await self._rejoin()
                    continue
                return
            if state in ("sold_out", "closed", "expired"):
                self.result.answer = state
                return
            if state == "not_in_queue":
                if self._may_rejoin():
                    data = await self._rejoin()
                    continue
                self.result.answer = "expired"
                return
            wait = data.get("poll_after_seconds") or 2.0
            await asyncio.sleep(wait)
            if refresh_after is not None and time.monotonic() >= refresh_after:
                refresh_after = None
                data = await self._refresh()
                continue
            data = await self._status()

    def _may_rejoin(self) -> bool:
        if self.rejoins_left <= 0 or self.s.stop.is_set():
            return False
        self.rejoins_left -= 1
        self.result.rejoined += 1
        return True

    async def _rejoin(self) -> dict[str, Any]:
        status, data, _ = await self.s.api.call("join", "POST", self.queue, headers=self.headers)
        if (over := _sale_over(status, data)) is not None:
            return {"state": over}
        if status not in (200, 201):
            raise RuntimeError(f"rejoin: {status} {data}")
        return dict(data)

    async def _status(self) -> dict[str, Any]:
        status, data, _ = await self.s.api.call(
            "status", "GET", f"{self.queue}/me", headers=self.headers
        )
        if status == 404:
            return {"state": "not_in_queue"}
        if status != 200:
            raise RuntimeError(f"status: {status} {data}")
        return dict(data)

    async def _refresh(self) -> dict[str, Any]:
        before = self.result.position
        status, data, _ = await self.s.api.call("join", "POST", self.queue, headers=self.headers)
        # 200 is "you already have a place": it must be the same one. (201 is a new place,
        # given only when the old one had expired.)
        if status == 200 and data["state"] == "waiting" and before is not None:
            self.result.refresh_kept_place = data["position"] == before
        if (over := _sale_over(status, data)) is not None:
            return {"state": over}
        if status not in (200, 201):
            raise RuntimeError(f"refresh: {status} {data}")
        return dict(data)

    async def _listen(self, first: dict[str, Any]) -> dict[str, Any]:
        """Follow the SSE stream until a terminal state; reconnect like EventSource does."""
        latest = first
        while latest["state"] in ("pre_queue", "waiting") and not self.s.stop.is_set():
            started = time.monotonic()
            try:
                async with self.s.api.session.get(
                    f"{self.queue}/me/events",
                    headers=self.headers | {"Accept": "text/event-stream"},
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
                ) as r:
                    # Time to the response head: the stream itself stays open.
                    self.s.api.recorder.record("sse_connect", started, r.status)
                    if r.status != 200:
                        await asyncio.sleep(1)
                        return await self._status()
                    event = ""
                    async for raw in r.content:
                        line = raw.decode().rstrip("\r\n")
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:") and event == "status":
                            latest = dict(json.loads(line[5:]))
                            if latest["state"] not in ("pre_queue", "waiting"):
                                return latest
                        elif line.startswith("data:") and event == "not_in_queue":
                            return {"state": "not_in_queue"}
            except (aiohttp.ClientError, TimeoutError):
                self.s.api.recorder.errors["sse: dropped"] += 1
                await asyncio.sleep(1)
            if latest["state"] in ("pre_queue", "waiting"):
                latest = await self._status()
        return latest

    async def _abandon(self, data: dict[str, Any]) -> None:
        self.result.position = data.get("position")
        for _ in range(self.rng.randint(0, 2)):
            await asyncio.sleep(data.get("poll_after_seconds") or 2.0)
            data = await self._status()
            if data["state"] not in ("pre_queue", "waiting"):
                break
        # Gone; back once more when the rush is over.
        await self.s.stop.wait()
        final = await self._status()
        self.result.answer = final["state"] if final["state"] != "not_in_queue" else "expired"
        if final["state"] in ("pre_queue", "waiting", "admitted"):
            self.result.answer = None  # still queued after the sale ended: not an answer

    async def _shop(self, token: str) -> bool:
        """Book and pay; True when the admission was lost with the place (the fan may rejoin)."""
        roll = self.rng.random()
        if roll < self.s.cfg.no_book_share:
            self.result.answer = "walked_away_admitted"
            return False
        abandon_hold = roll < self.s.cfg.no_book_share + self.s.cfg.hold_abandon_share
        gated = self.headers | {"X-Admission-Token": token}
        want = self.rng.choices((1, 2, 3, 4), weights=(25, 45, 15, 15))[0]
        for attempt in range(12):
            booking = await self._claim(gated, want)
            if booking == "sold_out":
                self.result.answer = "sold_out"
                return False
            if booking == "revoked":
                final = await self._status()
                if final["state"] == "not_in_queue" and self.rejoins_left > 0:
                    return True
                self.result.answer = (
                    final["state"] if final["state"] in FINAL_ANSWERS else ("closed")
                )
                return False
            if not isinstance(booking, int):
                await asyncio.sleep(0.1 if attempt < 3 else 0.5 + attempt * 0.25)
                continue
            if abandon_hold:
                self.result.answer = "hold_expired"
                return False
            if not await self._pay(booking, want):
                await self._leave()
            return False
        final = await self._status()
        self.result.answer = (
            final["state"] if final["state"] in ("sold_out", "closed") else ("sold_out")
        )
        await self._leave()
        return False

    async def _leave(self) -> None:
        # A fan who gives up closes the page, whose unload beacon leaves the line: the
        # admission slot goes to the next fan now instead of when the token runs out.
        await self.s.api.call("leave", "DELETE", f"{self.queue}/me", headers=self.headers)

    async def _claim(self, gated: dict[str, str], want: int) -> int | str | None:
        """One try: pick adjacent free seats on the map the page shows, claim them, follow
        the request to its outcome. A booking id, "sold_out", "revoked", or None (the seats
        went to someone else first: try again)."""
        rows = self.s.seat_view.rows
        if not rows:
            sale = await self._status()
            return "sold_out" if sale["state"] in ("sold_out", "closed") else None
        row = self.rng.choice(rows)
        start = self.rng.randrange(max(1, len(row) - want + 1))
        return await self._book(gated, row[start : start + want])

    async def _book(self, gated: dict[str, str], seat_ids: list[int]) -> int | str | None:
        api = self.s.api
        # Api.call retries a 503 or a dropped connection with the same Idempotency-Key: a
        # request the broker got but did not acknowledge is then the same request, not a second.
        status, data, _ = await api.call(
            "book",
            "POST",
            f"/concerts/{self.s.concert_id}/bookings",
            headers=gated | {"Idempotency-Key": uuid.uuid4().hex},
            json_body={"seat_ids": seat_ids},
        )
        if status in (401, 403):
            return "revoked"
        if status == 409:
            kind = data.get("type", "") if isinstance(data, dict) else ""
            return "sold_out" if kind.endswith("/sold-out") else None
        if status != 202:
            return None
        request_id = str(data["request_id"])
        self.result.accepted.append((request_id, time.monotonic() - self.s.opens_mono))
        for _ in range(200):
            await asyncio.sleep(0.25)
            status, outcome, _ = await api.call(
                "outcome", "GET", f"/bookings/requests/{request_id}", headers=self.headers
            )
            if status == 200 and outcome["status"] == "held":
                return int(outcome["booking_id"])
            if status == 200 and outcome["status"] == "rejected":
                return None
        return None

    async def _pay(self, booking_id: int, want: int) -> bool:
        """Pay for the hold; True when the fan got the ticket."""
        api = self.s.api
        declined = 0
        for _ in range(20):
            status, data, headers = await api.call(
                "pay", "POST", f"/bookings/{booking_id}/pay", headers=self.headers
            )
            if status == 200 and data["status"] == "confirmed":
                self.result.answer = "ticket"
                self.result.tickets = len(data.get("tickets") or []) or want
                self.result.confirmed_bookings.append(booking_id)
                return True
            if status == 402:
                declined += 1
                if declined >= 2:
                    await api.call(
                        "cancel", "DELETE", f"/bookings/{booking_id}", headers=self.headers
                    )
                    self.result.answer = "payment_declined"
                    return False
                continue
            if status == 409:  # the hold ran out meanwhile
                self.result.answer = "hold_expired"
                return False
            await asyncio.sleep(float(headers.get("Retry-After", "1")))
        self.result.answer = "payment_declined"
        return False


# --- the run ---------------------------------------------------------------------------------


async def kafka_offsets(settings: Settings) -> dict[str, int]:
    """End offsets of both booking topics and the consumer group's committed offsets (sums)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.booking_consumer_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        out: dict[str, int] = {}
        await consumer.topics()  # fetches the metadata partitions_for_topic reads
        for topic in (REQUESTS_TOPIC, RESULTS_TOPIC):
            # The broker's partitions, not the configured count: a topic made elsewhere wins.
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
            tps = [TopicPartition(topic, p) for p in partitions]
            ends = await consumer.end_offsets(tps)
            out[f"{topic}:end"] = sum(ends.values())
            if topic == REQUESTS_TOPIC:
                committed = [await consumer.committed(tp) for tp in tps]
                out[f"{topic}:committed"] = sum(c or 0 for c in committed)
        return out
    finally:
        await consumer.stop()


async def requested_ids(settings: Settings, concert_id: int) -> tuple[int, set[str]]:
    """Booking requests of one concert on the requests topic: (messages, distinct request ids).
    More messages than ids are resends of one request (retries with the same key, or sends
    the broker kept but did not acknowledge in time), which the consumers' inbox drops."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(REQUESTS_TOPIC, p)
            for p in sorted(consumer.partitions_for_topic(REQUESTS_TOPIC) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        messages, ids = 0, set()
        while True:
            behind = [tp for tp, end in ends.items() if await consumer.position(tp) < end]
            if not behind:
                break
            batch = await consumer.getmany(*tps, timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for record in records:
                    # The topic may hold others' poison messages (the dead-letter tests'):
                    # whatever does not parse is not a request of this concert.
                    try:
                        body = json.loads(record.value or b"{}")
                    except ValueError:
                        continue
                    if (
                        isinstance(body, dict)
                        and body.get("concert_id") == concert_id
                        and body.get("request_id") is not None
                    ):
                        messages += 1
                        ids.add(str(body["request_id"]))
        return messages, ids
    finally:
        await consumer.stop()


async def sample_forever(
    api: Api,
    admin: dict[str, str],
    sale_id: int,
    concert_id: int,
    opens_mono: float,
    samples: list[Sample],
    engine: AsyncEngine,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        tick = time.monotonic()
        try:
            async with api.session.get(f"/sales/{sale_id}/stats", headers=admin) as r:
                stats = await r.json()
            async with engine.connect() as conn:
                sold = await conn.scalar(
                    text("SELECT count(*) FROM ticket WHERE concert_id = :c"), {"c": concert_id}
                )
            samples.append(
                Sample(
                    t=tick - opens_mono,
                    queue_length=stats["queue_length"],
                    pre_queue=stats["pre_queue"],
                    admitted_active=stats["admitted_active"],
                    admitted_total=stats["admitted_total"],
                    rate=stats["current_rate"],
                    measured_rate=stats["measured_rate"],
                    sold=int(sold or 0),
                    status=stats["status"],
                )
            )
        except (aiohttp.ClientError, KeyError, TimeoutError):
            pass
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


async def run_rush(
    *,
    base_url: str,
    settings: Settings,
    cfg: RushConfig,
    on_progress: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    checkout_url: str | None = None,
) -> RushOutcome:
    """Set up a sale, release the fans, wait for every answer, verify. Raises nothing for a
    failed invariant: the caller reads `outcome.checks`. With `checkout_url`, admitted fans'
    seat-map, booking and payment calls go there (the stack's checkout API)."""
    rng = random.Random(cfg.seed)
    engine = create_async_engine(settings.database_url, pool_size=4)
    kafka_before = await kafka_offsets(settings)
    [(_, admin_token)] = await create_accounts(engine, settings, 1, "admin")
    admin = {"Authorization": f"Bearer {admin_token}"}
    recorder = Recorder(opens_at=time.monotonic())
    api = Api(base_url, recorder, cfg.in_flight, checkout_url)
    try:
        accounts = await create_accounts(engine, settings, cfg.fans, "fan")
        concert_id, sale_id, opens_unix = await setup_sale(api, admin, cfg)
        async with engine.connect() as conn:
            rows: dict[tuple[int, str], list[int]] = defaultdict(list)
            for seat_id, section_id, row_label in await conn.execute(
                text(
                    "SELECT id, section_id, row_label FROM seat WHERE concert_id = :c"
                    " ORDER BY section_id, row_label, number"
                ),
                {"c": concert_id},
            ):
                rows[(section_id, row_label)].append(seat_id)
        started_wall = datetime.now(UTC)
        opens_mono = time.monotonic() + (opens_unix - time.time())
        recorder.opens_at = opens_mono
        stop = asyncio.Event()
        seat_view = SeatView(list(rows.values()))
        shared = Shared(api, cfg, concert_id, sale_id, seat_view, opens_mono, stop, rng)
        fans: list[VirtualFan] = []
        tasks = []
        now = time.monotonic()
        for user_id, token in accounts:
            fan = VirtualFan(shared, user_id, token, random.Random(rng.random()))
            if rng.random() < cfg.early_share:
                arrive = now + rng.uniform(0.5, max(0.6, opens_mono - now - 0.5))
            else:
                arrive = opens_mono + min(cfg.spike_max_s, rng.expovariate(1 / cfg.spike_mean_s))
            roll = rng.random()
            mode = (
                "abandon"
                if roll < cfg.abandon_share
                else "listen"
                if roll < cfg.abandon_share + cfg.listen_share
                else "poll"
            )
            fans.append(fan)
            tasks.append(asyncio.create_task(fan.run(arrive, mode)))
        samples: list[Sample] = []
        sampler = asyncio.create_task(
            sample_forever(api, admin, sale_id, concert_id, opens_mono, samples, engine, stop)
        )
        seat_map = asyncio.create_task(seat_view.refresh_forever(api, concert_id, admin, stop))
        active = tasks
        sold_out_after: float | None = None
        deadline = opens_mono + cfg.deadline_s
        while True:
            # Each pass walks every fan: at 50,000 fans every 0.5 s this loop was a seventh of
            # the generator's CPU (py-spy), which the fans' own requests need.
            await asyncio.sleep(2.0)
            pending = sum(1 for t in active if not t.done())
            latest = samples[-1] if samples else None
            if latest is not None and latest.status == "closed" and sold_out_after is None:
                sold_out_after = latest.t
            if on_progress is not None:
                await on_progress(
                    {
                        "t": time.monotonic() - opens_mono,
                        "sample": latest,
                        "fans_done": len(active) - pending,
                        "fans": len(active),
                        "requests": recorder.requests,
                        "in_flight": api.active,
                        "answers": Counter(f.result.answer for f in fans if f.result.answer),
                    }
                )
            waiting_for_abandoners = sum(
                1
                for f, t in zip(fans, active, strict=True)
                if not t.done() and f.result.mode != "abandon"
            )
            if waiting_for_abandoners == 0 and (latest is not None and latest.status == "closed"):
                break
            if time.monotonic() > deadline:
                break
        if latest is None or latest.status != "closed":
            # Out of time (the run fails): close the sale so the fans still in line get their
            # "closed" answer and no open sale with a crowd in it outlives the run.
            await api.call("setup", "POST", f"/sales/{sale_id}:close", headers=admin)
        stop.set()  # abandoners come back and look; stragglers end
        await asyncio.wait(active, timeout=30)
        for t in active:
            if not t.done():
                t.cancel()
        finished_after = time.monotonic() - opens_mono
        sampler.cancel()
        seat_map.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        outcome = RushOutcome(
            config=cfg,
            concert_id=concert_id,
            sale_id=sale_id,
            fans=[f.result for f in fans],
            samples=samples,
            recorder=recorder,
            started_wall=started_wall,
            sold_out_after_s=sold_out_after,
            finished_after_s=finished_after,
            kafka_before=kafka_before,
            checkout_url=checkout_url,
        )
        await drained(settings, timeout_s=30)
        outcome.checks = await verify(engine, settings, outcome)
        return outcome
    finally:
        await api.close()
        await engine.dispose()


async def drained(settings: Settings, *, timeout_s: float) -> bool:
    """Wait until the consumer group has committed every booking request on the topic (a
    cancelled fan's last request may still be on its way), so the counts compare one moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        offsets = await kafka_offsets(settings)
        if offsets[f"{REQUESTS_TOPIC}:committed"] >= offsets[f"{REQUESTS_TOPIC}:end"]:
            await asyncio.sleep(1)  # the last batch's results reach booking-results
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)


async def verify(engine: AsyncEngine, settings: Settings, outcome: RushOutcome) -> dict[str, Any]:
    """The invariants, from PostgreSQL and the broker (never from the generator's own view,
    except for what only the fans know: their answers)."""
    c = outcome.concert_id
    async with engine.connect() as conn:
        seats = await conn.scalar(text("SELECT count(*) FROM seat WHERE concert_id = :c"), {"c": c})
        sold = await conn.scalar(
            text(
                "SELECT count(*) FROM ticket t JOIN booking b ON b.id = t.booking_id"
                " WHERE t.concert_id = :c AND b.status = 'confirmed'"
            ),
            {"c": c},
        )
        double_booked = await conn.scalar(
            text(
                "SELECT count(*) FROM (SELECT seat_id FROM ticket WHERE concert_id = :c"
                " GROUP BY seat_id HAVING count(*) > 1) d"
            ),
            {"c": c},
        )
        double_active = await conn.scalar(
            text(
                "SELECT count(*) FROM (SELECT bs.seat_id FROM booking_seat bs JOIN booking b"
                " ON b.id = bs.booking_id WHERE b.concert_id = :c AND bs.active"
                " GROUP BY bs.seat_id HAVING count(*) > 1) d"
            ),
            {"c": c},
        )
        inbox_ids = {
            str(rid)
            for rid in await conn.scalars(
                text("SELECT request_id FROM booking_inbox WHERE concert_id = :c"), {"c": c}
            )
        }
        held_outcomes = await conn.scalar(
            text("SELECT count(*) FROM booking_inbox WHERE concert_id = :c AND outcome = 'held'"),
            {"c": c},
        )
        bookings = await conn.scalar(
            text("SELECT count(*) FROM booking WHERE concert_id = :c"), {"c": c}
        )
        still_held = await conn.scalar(
            text("SELECT count(*) FROM booking WHERE concert_id = :c AND status = 'held'"),
            {"c": c},
        )
    after = await kafka_offsets(settings)
    before = outcome.kafka_before
    produced = after[f"{REQUESTS_TOPIC}:end"] - before[f"{REQUESTS_TOPIC}:end"]
    processed = after[f"{REQUESTS_TOPIC}:committed"] - before[f"{REQUESTS_TOPIC}:committed"]
    results = after[f"{RESULTS_TOPIC}:end"] - before[f"{RESULTS_TOPIC}:end"]
    messages, topic_ids = await requested_ids(settings, c)
    accepted = {rid for f in outcome.fans for rid, _ in f.accepted}
    answers = Counter(f.answer or "unanswered" for f in outcome.fans)
    unanswered = sum(n for a, n in answers.items() if a not in FINAL_ANSWERS)
    refreshes = [f.refresh_kept_place for f in outcome.fans if f.refresh_kept_place is not None]
    fan_tickets = sum(f.tickets for f in outcome.fans)
    return {
        "seats": int(seats or 0),
        "sold": int(sold or 0),
        "oversold": max(0, int(sold or 0) - int(seats or 0)),
        "double_booked": int(double_booked or 0) + int(double_active or 0),
        "accepted_202": len(accepted),
        "kafka_produced": produced,
        "kafka_processed": processed,
        # Left on the topic, not committed by the group: must be 0 once drained. (The deltas
        # above can differ by messages produced before the run and consumed during it.)
        "kafka_unconsumed": after[f"{REQUESTS_TOPIC}:end"] - after[f"{REQUESTS_TOPIC}:committed"],
        "kafka_results": results,
        "kafka_request_ids": len(topic_ids),
        "kafka_resends": messages - len(topic_ids),
        "db_outcomes": len(inbox_ids),
        # Acknowledged to a fan but with no outcome in PostgreSQL: lost.
        "lost": len(accepted - inbox_ids),
        # Outcomes in PostgreSQL for requests that never reached the topic: invented.
        "phantom": len(inbox_ids - topic_ids),
        "unrecorded": len(topic_ids - inbox_ids),
        "db_held_outcomes": int(held_outcomes or 0),
        "db_bookings": int(bookings or 0),
        "holds_left": int(still_held or 0),
        "fan_tickets": fan_tickets,
        "answers": dict(answers),
        "unanswered": unanswered,
        "refreshes": len(refreshes),
        "refresh_lost_place": sum(1 for kept in refreshes if not kept),
    }


def failed_invariants(checks: dict[str, Any]) -> list[str]:
    """Human-readable failures; empty when the run is correct."""
    failures = []
    if checks["sold"] != checks["seats"]:
        failures.append(f"sold {checks['sold']} != seats {checks['seats']}")
    if checks["oversold"]:
        failures.append(f"oversold {checks['oversold']}")
    if checks["double_booked"]:
        failures.append(f"double-booked {checks['double_booked']}")
    if checks["kafka_unconsumed"] > 0:
        failures.append(f"{checks['kafka_unconsumed']} booking requests left unconsumed")
    for name, what in (
        ("lost", "acknowledged requests without an outcome"),
        ("phantom", "outcomes of requests never produced"),
        ("unrecorded", "produced requests without an outcome"),
    ):
        if checks[name]:
            failures.append(f"{checks[name]} {what}")
    if checks["db_held_outcomes"] != checks["db_bookings"]:
        failures.append(
            f"held outcomes {checks['db_held_outcomes']} != bookings {checks['db_bookings']}"
        )
    if checks["fan_tickets"] != checks["sold"]:
        failures.append(f"tickets fans got {checks['fan_tickets']} != sold {checks['sold']}")
    if checks["unanswered"]:
        failures.append(f"{checks['unanswered']} fans without a final answer")
    if checks["refresh_lost_place"]:
        failures.append(f"{checks['refresh_lost_place']} refreshes lost the place")
    return failures
