"""Every dashboard query against a real Prometheus scraping a real small rush.

The processes of the local stack (API with 2 uvicorn workers, admission worker, 2 booking
consumers, payment simulator, on the session's broker) are scraped every second while 300 fans
rush 50 seats. Then every panel query of dashboards/*.json must evaluate without error and
return data, the API's multi-worker counters must add up to what the clients sent, and the key
panels render as PNGs."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from app.core.config import Settings
from app.devstack.broker import ensure_topics, free_port, spawn, stop_process
from dashboards.build import BOARDS, expand, file_name, panel_queries
from dashboards.render import render_key_panels
from loadtests.rush import failed_invariants, run_rush
from tests.conftest import LiveServer
from tests.fixtures.booking_consumer import consumer_env, produce, start_consumer
from tests.fixtures.payments import SimProcess
from tests.observability.conftest import Prometheus
from tests.queue.conftest import SMALL_RUSH, WORKER_ENV, process_env, start_two_worker_api

ROOT = Path(__file__).resolve().parents[2]
# Request kinds of the rush's client -> the API's count of them.
KINDS = {
    "join": 'sum(tr_http_requests_total{route="/sales/{sale_id}/queue",method="POST"})',
    "book": 'sum(tr_http_requests_total{route="/concerts/{concert_id}/bookings",method="POST"})',
}


@pytest.fixture
async def own_settings(settings: Settings) -> AsyncIterator[Settings]:
    """The session's database and broker with a Redis prefix of this test's own: no other
    test's admission worker can take the rush sale's lease, so the per-sale gauges come from
    the worker Prometheus scrapes."""
    own = settings.model_copy(
        update={"redis_prefix": f"{settings.redis_prefix}-obs{uuid.uuid4().hex[:6]}"}
    )
    yield own
    client = aioredis.Redis.from_url(own.redis_url)
    try:
        async for key in client.scan_iter(match=f"{own.redis_prefix}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture
def rush_api(own_settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    """An API of this test's own (2 workers): its counters hold this rush's requests only."""
    server = start_two_worker_api(own_settings, tmp_path / "api.log")
    yield server
    stop_process(server.proc.pid)


def _host(url: str) -> str:
    return url.removeprefix("http://").rstrip("/")


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


async def test_every_panel_query_returns_data_during_a_rush(
    prometheus: Prometheus,
    rush_api: LiveServer,
    sim_process: SimProcess,
    own_settings: Settings,
    tmp_path: Path,
) -> None:
    settings = own_settings
    setup_started = time.time()
    await ensure_topics(settings.kafka_bootstrap, settings.kafka_topics)
    group = f"obs-{uuid.uuid4().hex[:8]}"
    consumer_ports = [free_port(), free_port()]
    consumers = [
        start_consumer(
            consumer_env(
                settings,
                TR_BOOKING_CONSUMER_GROUP=group,
                TR_BOOKING_CONSUMER_METRICS_PORT=str(port),
            ),
            tmp_path / f"consumer-{i}.log",
            wait=False,
        )
        for i, port in enumerate(consumer_ports)
    ]
    admission_port = free_port()
    admission = spawn(
        [sys.executable, "-m", "app.admission"],
        tmp_path / "admission.log",
        env=process_env(
            settings, **(WORKER_ENV | {"TR_ADMISSION_METRICS_PORT": str(admission_port)})
        ),
        cwd=ROOT,
    )
    for consumer in consumers:
        consumer.wait_assigned()
    prometheus.scrape(
        {
            "api": [_host(rush_api.url)],
            "admission": [f"127.0.0.1:{admission_port}"],
            "booking-consumer": [f"127.0.0.1:{p}" for p in consumer_ports],
            "payments-sim": [_host(sim_process.url)],
        }
    )
    _wait(
        lambda: (
            set(prometheus.targets_up().values()) == {"up"} and len(prometheus.targets_up()) == 5
        ),
        30,
        f"not every target is up: {prometheus.targets_up()}",
    )
    cfg = SMALL_RUSH
    started = time.time()
    marks = {"setup": started - setup_started}
    try:
        outcome = await run_rush(
            base_url=rush_api.url,
            settings=settings.model_copy(update={"booking_consumer_group": group}),
            cfg=cfg,
        )
        marks["rush"] = time.time() - started
        # What a rush does not do by itself: catalog reads (cache) and a poison message (DLQ).
        async with httpx.AsyncClient(base_url=rush_api.url, timeout=30) as client:
            for _ in range(3):
                r = await client.get(f"/concerts/{outcome.concert_id}")
                assert r.status_code == 200, r.text
        await produce(settings.kafka_bootstrap, [(b"obs", b"not a booking request")])
        _wait(
            lambda: (prometheus.value("sum(tr_booking_consumer_dlq_total)") or 0) >= 1,
            30,
            "the malformed message was not dead-lettered",
        )
        # The API's counters are the sum over both workers: they match what the clients got
        # answers to (a request whose answer was lost in transit counts on the server only).
        statuses = outcome.recorder.statuses
        sent = {kind: sum(n for (k, _), n in statuses.items() if k == kind) for kind in KINDS}
        unanswered = {
            kind
            for kind in KINDS
            for error in outcome.recorder.errors
            if error.startswith(f"{kind}: ") and "retried" not in error
        }

        def counted() -> dict[str, float]:
            return {kind: prometheus.value(expr) or 0 for kind, expr in KINDS.items()}

        def agrees() -> bool:
            seen = counted()
            return all(
                seen[kind] >= sent[kind] if kind in unanswered else seen[kind] == sent[kind]
                for kind in KINDS
            )

        deadline = time.monotonic() + 30
        while not agrees():
            assert time.monotonic() < deadline, (counted(), sent, unanswered)
            time.sleep(0.5)
        ended = time.time()
        marks["after_rush"] = ended - started - marks["rush"]
    finally:
        for consumer in consumers:
            consumer.stop()
        stop_process(admission.pid)
    assert failed_invariants(outcome.checks) == [], outcome.checks
    assert sent["join"] >= cfg.fans and sent["book"] > 0

    marks["stop"] = time.time() - ended
    variables = {"$sale": str(outcome.sale_id), "$__range": f"{int(ended - started) + 60}s"}
    # "During the rush": each query at a dozen instants of the run until one has data (a
    # closed sale's gauges and a stopped process's series end with them).
    instants = sorted(
        (started + (ended - started) * i / 12 for i in range(2, 13)),
        key=lambda at: abs(at - (started + ended) / 2),
    )
    queries = [
        (f"{board.title} / {title}", expand(expr, variables))
        for board in BOARDS
        for title, expr in panel_queries(
            json.loads((ROOT / "dashboards" / file_name(board)).read_text())
        )
    ]

    def has_data(query: str) -> bool:
        return any(prometheus.query(query, at=at) for at in instants)

    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(lambda item: has_data(item[1]), queries))
    failures = [
        f"{name}: {query}" for (name, query), ok in zip(queries, answered, strict=True) if not ok
    ]
    checked = len(queries)
    assert checked >= 40
    marks["queries"] = time.time() - ended - marks["stop"]
    assert failures == [], "panel queries without data:\n" + "\n".join(failures)

    # A few figures the run must show, not only "some series".
    sale = outcome.sale_id
    figures = {
        name: prometheus.value(expr, at=ended)
        for name, expr in {
            "admitted": f'sum(tr_admission_admitted_total{{sale="{sale}"}})',
            "joined": f'sum(tr_queue_fans_total{{sale="{sale}",event="joined"}})',
            "dead_lettered": 'sum(tr_booking_consumer_dlq_total{kind="malformed"})',
            "produced": 'sum(tr_kafka_produce_duration_seconds_count{job="api"})',
            "pool_max": "sum(tr_db_pool_connections_max)",
        }.items()
    }
    assert (figures["admitted"] or 0) >= 50, figures
    assert (figures["joined"] or 0) >= 1, figures
    assert figures["dead_lettered"] == 1, figures
    assert (figures["produced"] or 0) > 0 and outcome.checks["kafka_produced"] > 0, figures
    assert (figures["pool_max"] or 0) > 0, figures

    drawn = render_key_panels(
        prometheus.url, tmp_path / "png", start=started, end=ended, variables=variables
    )
    assert len(drawn) >= 10
    assert all(path.stat().st_size > 5_000 for path in drawn)
    assert sum(1 for series in drawn.values() if series) >= len(drawn) - 1, drawn
    marks["png"] = time.time() - ended - marks["stop"] - marks["queries"]
    print(f"checked {checked} panel queries; {marks=}; PNGs in {tmp_path / 'png'}", file=sys.stderr)
