"""The simulator process itself: idempotency, refunds, validation, fault knobs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.devstack.broker import stop_process
from tests.fixtures.payments import Sim, start_sim
from tests.payments.conftest import new_key

PROBLEM_JSON = "application/problem+json"


def charge_body(key: str, amount: int = 1500, currency: str = "EUR") -> dict[str, Any]:
    return {"idempotency_key": key, "amount_minor": amount, "currency": currency}


async def test_same_key_returns_the_same_charge(sim: Sim) -> None:
    key = new_key()
    before = await sim.stats()
    first = await sim.http.post("/charges", json=charge_body(key))
    replay = await sim.http.post("/charges", json=charge_body(key))
    after = await sim.stats()

    assert first.status_code == 201, first.text
    assert replay.status_code == 200, replay.text
    assert replay.json() == first.json()
    charge = first.json()
    assert charge["status"] == "succeeded"
    assert (charge["amount_minor"], charge["currency"]) == (1500, "EUR")
    assert charge["created_at"].endswith("Z")
    assert after["charges_created"] - before["charges_created"] == 1
    assert after["replays"] - before["replays"] == 1
    assert (await sim.charge(key)).json() == charge


async def test_same_key_other_amount_is_a_conflict(sim: Sim) -> None:
    key = new_key()
    assert (await sim.http.post("/charges", json=charge_body(key))).status_code == 201
    before = await sim.stats()

    r = await sim.http.post("/charges", json=charge_body(key, amount=1501))

    assert r.status_code == 409
    assert r.headers["content-type"] == PROBLEM_JSON
    after = await sim.stats()
    assert after["charges_created"] == before["charges_created"]
    assert after["conflicts"] - before["conflicts"] == 1
    assert (await sim.charge(key)).json()["amount_minor"] == 1500


async def test_refund_is_idempotent(sim: Sim) -> None:
    key = new_key()
    await sim.http.post("/charges", json=charge_body(key))
    before = await sim.stats()

    first = await sim.http.post("/refunds", json={"idempotency_key": key})
    again = await sim.http.post("/refunds", json={"idempotency_key": key})

    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == "refunded"
    assert first.json()["refunded_at"] == again.json()["refunded_at"]
    assert (await sim.stats())["refunds"] - before["refunds"] == 1


async def test_refund_of_unknown_or_declined_charge(sim: Sim) -> None:
    unknown = await sim.http.post("/refunds", json={"idempotency_key": new_key()})
    assert unknown.status_code == 404

    await sim.control(decline_rate=1)
    key = new_key()
    charged = await sim.http.post("/charges", json=charge_body(key))
    assert charged.json()["status"] == "declined"
    declined = await sim.http.post("/refunds", json={"idempotency_key": key})
    assert declined.status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"idempotency_key": "", "amount_minor": 100, "currency": "EUR"},
        {"idempotency_key": "k" * 101, "amount_minor": 100, "currency": "EUR"},
        {"idempotency_key": "k", "amount_minor": 0, "currency": "EUR"},
        {"idempotency_key": "k", "amount_minor": -5, "currency": "EUR"},
        {"idempotency_key": "k", "amount_minor": 10.5, "currency": "EUR"},
        {"idempotency_key": "k", "amount_minor": "100", "currency": "EUR"},
        {"idempotency_key": "k", "amount_minor": 100, "currency": "eur"},
        {"idempotency_key": "k", "amount_minor": 100, "currency": "EURO"},
        {"idempotency_key": "k", "amount_minor": 100},
        {"idempotency_key": "k", "amount_minor": 100, "currency": "EUR", "extra": 1},
        ["not", "an", "object"],
    ],
)
async def test_bad_charge_is_rejected_and_leaves_no_state(sim: Sim, body: Any) -> None:
    before = await sim.stats()

    r = await sim.http.post("/charges", json=body)

    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    problem = r.json()
    assert problem["type"].endswith("/validation-error")
    assert problem["status"] == 422
    assert problem["errors"]
    assert await sim.stats() == before
    assert (await sim.charge("k")).status_code == 404


async def test_malformed_json_and_bad_knobs_are_rejected(sim: Sim) -> None:
    before = await sim.stats()
    r = await sim.http.post(
        "/charges", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert await sim.stats() == before

    knobs = (await sim.http.get("/_control")).json()
    for bad in ({"failure_rate": 2}, {"latency_ms": -1}, {"no_such_knob": 1}):
        r = await sim.http.post("/_control", json=bad)
        assert r.status_code == 422, bad
    assert (await sim.http.get("/_control")).json() == knobs


async def test_mixed_failures_fail_before_and_after_recording(sim: Sim) -> None:
    await sim.control(failure_rate=1, failure_point="mixed")
    keys = [new_key() for _ in range(4)]
    before = await sim.stats()

    statuses = [(await sim.http.post("/charges", json=charge_body(k))).status_code for k in keys]

    assert statuses == [500] * 4
    recorded = [(await sim.charge(k)).status_code == 200 for k in keys]
    # Alternating: every other failure happened after the charge was recorded.
    assert recorded in ([True, False] * 2, [False, True] * 2)
    after = await sim.stats()
    assert after["failures_injected"] - before["failures_injected"] == 4
    assert after["charges_created"] - before["charges_created"] == 2


async def test_first_attempt_only_lets_the_retry_through(sim: Sim) -> None:
    await sim.control(failure_rate=1, failure_point="before", first_attempt_only=True)
    key = new_key()

    first = await sim.http.post("/charges", json=charge_body(key))
    retry = await sim.http.post("/charges", json=charge_body(key))

    assert (first.status_code, retry.status_code) == (500, 201)


async def test_outage_errors_then_recovers(sim: Sim) -> None:
    await sim.control(outage=True)
    key = new_key()
    before = await sim.stats()

    r = await sim.http.post("/charges", json=charge_body(key))

    assert r.status_code == 503
    assert r.headers["content-type"] == PROBLEM_JSON
    assert (await sim.stats())["outage_rejections"] - before["outage_rejections"] == 1
    await sim.control(outage=False)
    assert (await sim.http.post("/charges", json=charge_body(key))).status_code == 201


async def test_outage_hang_holds_the_request(sim: Sim) -> None:
    await sim.control(outage=True, outage_mode="hang")

    with pytest.raises(httpx.ReadTimeout):
        await sim.http.post("/charges", json=charge_body(new_key()), timeout=0.3)

    await sim.control(outage=False)
    r = await sim.http.post("/charges", json=charge_body(new_key()), timeout=2)
    assert r.status_code == 201


async def test_latency_knob(sim: Sim) -> None:
    await sim.control(latency_ms=200, jitter_ms=20)
    started = time.monotonic()
    r = await sim.http.post("/charges", json=charge_body(new_key()))
    assert r.status_code == 201
    assert time.monotonic() - started >= 0.18


async def test_startup_knobs_from_cli_and_env(tmp_path: Path) -> None:
    proc = start_sim(
        tmp_path / "sim.log", "--outage", "0-2.5", env={"TR_PAYMENTS_SIM_DECLINE_RATE": "1"}
    )
    try:
        async with httpx.AsyncClient(base_url=proc.url, timeout=2) as http:
            in_window = await http.post("/charges", json=charge_body(new_key()))
            assert in_window.status_code == 503
            deadline = time.monotonic() + 5
            while True:
                r = await http.post("/charges", json=charge_body(new_key()))
                if r.status_code != 503 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 201, r.text
            assert r.json()["status"] == "declined"
    finally:
        stop_process(proc.pid)
