"""The real operator (`kopf run` subprocess) against the Kubernetes API emulator, the real API
process, Redis and the Tansu broker: phases on a seconds-long timeline, lag moving the
admission rate and the consumer replicas and back, app outages, deletion."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from redis.asyncio import Redis

from app.core.config import Settings
from app.core.redis import Keys
from app.devstack.broker import (
    ensure_topics,
    free_port,
    start_broker,
    stop_process,
    wait_broker_ready,
)
from app.queue.signals import publish_signals, signal_keys
from tests.booking.conftest import make_sale
from tests.conftest import signup_and_login
from tests.k8s.operator_fixtures import (
    ApiProcess,
    Cluster,
    KafkaTopic,
    OperatorLauncher,
    concert_sale,
    k8s_cluster,
    operator_admin,
    operator_api,
    operator_launcher,
    requests_topic,
    schema_errors,
    wait_for,
)
from tests.queue.conftest import WorkerProcess, admission_workers, new_sale

__all__ = [
    "admission_workers",
    "k8s_cluster",
    "operator_admin",
    "operator_api",
    "operator_launcher",
    "requests_topic",
]

FINALIZER = "ticketrush.io/sale-cleanup"


async def produce(topic: KafkaTopic, n: int) -> None:
    """Booking requests nobody consumes: lag. One batch per record: Tansu's ListOffsets counts
    a multi-record batch as one offset (real Kafka counts records)."""
    producer = AIOKafkaProducer(bootstrap_servers=topic.bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(topic.name, b"{}", key=str(i).encode())
    finally:
        await producer.stop()


async def drain(topic: KafkaTopic) -> None:
    """What the booking consumers would do: commit the group's offsets up to the end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=topic.bootstrap, group_id=topic.group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: ends[tp] for tp in tps})
    finally:
        await consumer.stop()


async def until(
    cluster: Cluster, name: str, check: Callable[[dict[str, Any]], Any], what: str
) -> Any:
    """Wait until `check(status)` holds for the ConcertSale `name`."""
    return await wait_for(
        lambda: check(status_of(cluster, name)),
        what=what,
        context=lambda: (status_of(cluster, name), cluster.replicas()),
    )


def status_of(cluster: Cluster, name: str) -> dict[str, Any]:
    sale = cluster.sale(name)
    return dict(sale.get("status", {})) if sale else {}


def condition(status: dict[str, Any], type_: str) -> str | None:
    for cond in status.get("conditions", []):
        if cond["type"] == type_:
            return str(cond["status"])
    return None


def event_reasons(cluster: Cluster) -> list[str]:
    return [str(e.get("reason")) for e in cluster.events()]


async def apply(cluster: Cluster, body: dict[str, Any]) -> None:
    assert schema_errors(body) == []  # what the API server would check: the emulator does not
    out = await cluster.kubectl(
        "apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(body).encode()
    )
    assert "created" in out or "configured" in out


async def test_sale_lifecycle_rate_and_consumers_follow_lag(
    k8s_cluster: Cluster,
    operator_launcher: OperatorLauncher,
    operator_api: ApiProcess,
    requests_topic: KafkaTopic,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    admission_workers: Callable[..., WorkerProcess],
    settings: Settings,
) -> None:
    cluster, name = k8s_cluster, "lifecycle"
    concert = await make_sale(client, admin_headers)
    fans = [await signup_and_login(client) for _ in range(3)]
    operator = operator_launcher.start(operator_api.url)
    admission_workers()  # the app's own worker admits fans at the rate the operator pins
    await apply(
        cluster, concert_sale(name, concert.concert_id, opens_in=8, closes_in=120, warmup_s=3)
    )

    # Created in the app through its API, at the initial rate pinned (manual), with a finalizer.
    sale_id = await until(cluster, name, lambda s: s.get("saleId"), "saleId")
    r = await client.get(f"/sales/{sale_id}/stats", headers=admin_headers)
    assert r.json()["status"] == "scheduled"
    assert (r.json()["current_rate"], r.json()["rate_mode"]) == (20.0, "manual")
    assert FINALIZER in cluster.sale(name)["metadata"]["finalizers"]  # type: ignore[index]

    # Fans in the pre-queue show up in the status.
    for fan in fans:
        r = await client.post(
            f"/sales/{sale_id}/queue", headers={"Authorization": f"Bearer {fan['access_token']}"}
        )
        assert r.status_code == 201, r.text
    await until(cluster, name, lambda s: s.get("queueLength") == 3, "queue 3")

    # Warming pre-scales to the ceiling: max 3, but only 2 partitions.
    await until(cluster, name, lambda s: s.get("phase") == "Warming", "Warming")
    await wait_for(lambda: cluster.replicas() == 2, what="pre-warmed to 2")

    # Open: the app's sale opens, no lag -> the rate climbs, consumers go back to min after
    # the 2 s stabilization window.
    await until(cluster, name, lambda s: s.get("phase") == "Open", "Open")
    r = await client.get(f"/sales/{sale_id}", headers=admin_headers)
    assert r.json()["status"] == "open"
    await until(cluster, name, lambda s: s.get("currentRate", 0) > 20, "rate up")
    await wait_for(lambda: cluster.replicas() == 1, what="scaled down after the window")

    # An admitted fan buys a seat: admitted and sold show up in the status.
    fan = {"Authorization": f"Bearer {fans[0]['access_token']}"}
    for _ in range(50):
        me = await client.get(f"/sales/{sale_id}/queue/me", headers=fan)
        if me.json()["state"] == "admitted":
            break
        await asyncio.sleep(0.2)
    assert me.json()["state"] == "admitted", me.text
    r = await client.post(
        f"/concerts/{concert.concert_id}/bookings",
        # Synchronous (no booking consumer runs here), so soldSeats can follow at once.
        json={"seat_ids": concert.seat_ids[:2], "strategy": "atomic"},
        headers=fan | {"X-Admission-Token": me.json()["admission_token"], "Idempotency-Key": name},
    )
    assert r.status_code == 201, r.text
    r = await client.post(f"/bookings/{r.json()['id']}/pay", headers=fan)
    assert r.status_code == 200, r.text
    await until(cluster, name, lambda s: s.get("soldSeats") == 2, "2 seats sold")
    assert status_of(cluster, name)["admittedTotal"] == 3

    # Lag beyond what 2 consumers x 10 absorb: scale up at once (capped by partitions), and the
    # control law cuts the rate.
    rate_before = status_of(cluster, name)["currentRate"]
    await produce(requests_topic, 100)
    await until(cluster, name, lambda s: s.get("consumerLag") == 100, "lag seen")
    await wait_for(lambda: cluster.replicas() == 2, what="scaled up on lag")
    await until(cluster, name, lambda s: s.get("lastDecision") == "decrease", "rate cut")
    low = await wait_for(
        lambda: (r := status_of(cluster, name).get("currentRate", rate_before)) < rate_before and r,
        what="rate below the pre-lag rate",
    )
    r = await client.get(f"/sales/{sale_id}/stats", headers=admin_headers)
    assert r.json()["current_rate"] <= low and r.json()["rate_mode"] == "manual"

    # The lag drains: the rate climbs again and the consumers come back down.
    await drain(requests_topic)
    await until(cluster, name, lambda s: s.get("consumerLag") == 0, "lag drained")
    await until(cluster, name, lambda s: s.get("currentRate", 0) > low, "rate recovers")
    await wait_for(lambda: cluster.replicas() == 1, what="scaled back down")

    # Booking latency published by the app (Redis signal keys) also cuts the rate, and the rate
    # climbs again once the signal is gone.
    redis = Redis.from_url(settings.redis_url)
    try:
        await publish_signals(redis, Keys(settings.redis_prefix), p95_ms=4000, ttl_s=3)
        slow = status_of(cluster, name)["currentRate"]
        await until(
            cluster,
            name,
            lambda s: s.get("lastDecision") == "decrease" and s["currentRate"] < slow,
            "rate cut on p95",
        )
        await redis.delete(*signal_keys(Keys(settings.redis_prefix)))
        await until(cluster, name, lambda s: s.get("lastDecision") == "increase", "p95 healthy")
    finally:
        await redis.aclose()

    # Ending the sale early with lag outstanding: Draining, the app's sale is closed, then
    # Closed once the consumers caught up.
    await produce(requests_topic, 5)
    await until(cluster, name, lambda s: s.get("consumerLag") == 5, "tail lag")
    closes = cluster.sale(name)["spec"]["opensAt"]  # type: ignore[index]
    await cluster.kubectl(
        "patch",
        "concertsale",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"closesAt": _plus(closes, 1)}}),
    )
    await until(cluster, name, lambda s: s.get("phase") == "Draining", "Draining")
    r = await client.get(f"/sales/{sale_id}", headers=admin_headers)
    assert r.json()["status"] == "closed"
    await drain(requests_topic)
    await until(cluster, name, lambda s: s.get("phase") == "Closed", "Closed")

    table = await cluster.kubectl("get", "concertsales")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "RATE", "QUEUE", "CONSUMERS", "SOLD", "AGE"]
    final = status_of(cluster, name)
    assert row.split()[:6] == [
        name,
        "Closed",
        f"{final['currentRate']:g}",
        str(final["queueLength"]),
        str(final["consumerReplicas"]),
        str(final["soldSeats"]),
    ]
    assert condition(final, "LagMeasured") == condition(final, "ConsumersScaled") == "True"
    wide = (await cluster.kubectl("get", "cs", name, "-o", "wide")).splitlines()[0].split()
    assert "ADMITTED" in wide and "LAG" in wide
    phases = [e["message"] for e in cluster.events() if e["reason"] == "PhaseChanged"]
    assert phases == [
        "New -> Scheduled",
        "Scheduled -> Warming",
        "Warming -> Open",
        "Open -> Draining",
        "Draining -> Closed",
    ]
    reasons = event_reasons(cluster)
    assert "ScaledConsumers" in reasons and reasons.count("SaleCreated") == 1
    assert operator.alive(), operator.log()[-3000:]


def _plus(moment: str, seconds: float) -> str:
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(moment) + timedelta(seconds=seconds)).isoformat()


async def test_adopts_the_live_sale_survives_a_restart_and_delete_closes_it(
    k8s_cluster: Cluster,
    operator_launcher: OperatorLauncher,
    operator_api: ApiProcess,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    cluster, name = k8s_cluster, "adopted"
    concert = await make_sale(client, admin_headers)
    existing = await new_sale(client, admin_headers, concert_id=concert.concert_id)
    first = operator_launcher.start(operator_api.url)
    await apply(cluster, concert_sale(name, concert.concert_id, opens_in=1, closes_in=120))

    # The concert already had a live sale: the operator takes it over instead of failing.
    status = await until(cluster, name, lambda s: s.get("phase") == "Open" and s, "Open")
    assert status["saleId"] == existing["id"] and status["sale"]["adopted"] is True
    r = await client.get(f"/sales/{existing['id']}", headers=admin_headers)
    assert r.json()["status"] == "open"

    # A restarted operator picks the sale up where it was: no second create, same sale.
    await operator_launcher.stop(first)
    seen = status["observedAt"]
    operator_launcher.start(operator_api.url)
    status = await until(cluster, name, lambda s: s.get("observedAt", seen) > seen and s, "ticks")
    assert status["saleId"] == existing["id"] and status["phase"] == "Open"
    assert event_reasons(cluster).count("SaleAdopted") == 1
    assert "SaleCreated" not in event_reasons(cluster)

    # Deleting the resource closes the sale in the app, then the finalizer goes.
    await cluster.kubectl("delete", "concertsale", name, "--wait=false")
    await wait_for(lambda: cluster.sale(name) is None, what="finalizer removed, object gone")
    r = await client.get(f"/sales/{existing['id']}", headers=admin_headers)
    assert (r.json()["status"], r.json()["close_reason"]) == ("closed", "manual")
    assert "SaleClosed" in event_reasons(cluster)


async def test_app_outage_sets_degraded_and_recovers(
    k8s_cluster: Cluster,
    operator_launcher: OperatorLauncher,
    operator_api: ApiProcess,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    cluster, name = k8s_cluster, "outage"
    concert = await make_sale(client, admin_headers)
    operator = operator_launcher.start(operator_api.url)
    await operator_api.stop()
    try:
        # Down at create: Degraded, retried with backoff, no sale yet, no crash.
        await apply(cluster, concert_sale(name, concert.concert_id, opens_in=3, closes_in=120))
        await until(cluster, name, lambda s: condition(s, "Degraded") == "True", "Degraded")
        assert "saleId" not in status_of(cluster, name)
        assert "AppUnavailable" in event_reasons(cluster)
        operator_api.start()
        await operator_api.wait_ready()
        await until(cluster, name, lambda s: s.get("saleId"), "created after the outage")
        await until(cluster, name, lambda s: condition(s, "Degraded") == "False", "recovered")

        # Down while open: the timer backs off and reports it; back up, it goes on.
        await until(cluster, name, lambda s: s.get("phase") == "Open", "Open")
        await operator_api.stop()
        await until(cluster, name, lambda s: condition(s, "Degraded") == "True", "Degraded")
        assert status_of(cluster, name)["phase"] == "Open"
        operator_api.start()
        await operator_api.wait_ready()
        await until(cluster, name, lambda s: condition(s, "Degraded") == "False", "recovered")
        # kopf posts events from a background queue: the status can land before the event.
        await wait_for(
            lambda: event_reasons(cluster).count("Recovered") == 2, what="a second Recovered"
        )
        assert operator.alive(), operator.log()[-3000:]
    finally:
        if operator_api.proc is None:
            operator_api.start()
            await operator_api.wait_ready()


async def test_kafka_outage_holds_the_consumers_and_is_reported(
    k8s_cluster: Cluster,
    operator_launcher: OperatorLauncher,
    operator_api: ApiProcess,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    cluster, name = k8s_cluster, "no-kafka"
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = start_broker(port, tmp_path / "tansu.log")
    try:
        await wait_broker_ready(bootstrap)
        await ensure_topics(bootstrap, {operator_launcher.topic.name: 2})
        concert = await make_sale(client, admin_headers)
        operator = operator_launcher.start(operator_api.url, TR_OPERATOR_KAFKA_BOOTSTRAP=bootstrap)
        # Warming for a minute: the consumers sit at the ceiling (2 partitions).
        await apply(
            cluster, concert_sale(name, concert.concert_id, opens_in=60, closes_in=120, warmup_s=60)
        )
        await until(cluster, name, lambda s: condition(s, "LagMeasured") == "True", "lag read")
        await wait_for(lambda: cluster.replicas() == 2, what="pre-warmed")

        await asyncio.to_thread(stop_process, broker.pid)
        await until(cluster, name, lambda s: condition(s, "LagMeasured") == "False", "no lag")
        status = status_of(cluster, name)
        assert "consumerLag" not in status and status["phase"] == "Warming"
        assert cluster.replicas() == 2 and operator.alive()

        broker = start_broker(port, tmp_path / "tansu.log")
        await until(cluster, name, lambda s: condition(s, "LagMeasured") == "True", "lag again")
    finally:
        await asyncio.to_thread(stop_process, broker.pid)


async def test_sales_share_the_consumers_and_deletion_hands_them_back(
    k8s_cluster: Cluster,
    operator_launcher: OperatorLauncher,
    operator_api: ApiProcess,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    cluster = k8s_cluster
    early = await make_sale(client, admin_headers)
    late = await make_sale(client, admin_headers)
    operator_launcher.start(operator_api.url)
    # One sale is Warming (wants the ceiling, 2 partitions), the other Scheduled (wants 1).
    await apply(
        cluster, concert_sale("warm", early.concert_id, opens_in=60, closes_in=120, warmup_s=60)
    )
    await apply(cluster, concert_sale("later", late.concert_id, opens_in=600, closes_in=900))
    await until(cluster, "later", lambda s: s.get("phase") == "Scheduled", "Scheduled")
    await until(cluster, "warm", lambda s: s.get("phase") == "Warming", "Warming")
    await wait_for(lambda: cluster.replicas() == 2, what="the higher demand wins")
    assert status_of(cluster, "later")["consumerReplicas"] == 1  # its own recommendation

    await cluster.kubectl("delete", "concertsale", "warm", "--wait=false")
    await wait_for(lambda: cluster.sale("warm") is None, what="warm deleted")
    await wait_for(lambda: cluster.replicas() == 1, what="back to what the other sale wants")
