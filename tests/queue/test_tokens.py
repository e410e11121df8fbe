"""Admission tokens (JWT) on their own, then the booking-route dependencies `AdmittedFan` and
`AdmissionGate` mounted on a probe route: expired, forged, another sale's, another fan's and
revoked tokens are refused with problem+json before any handler runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import SecretStr

from app.core.config import Settings
from app.core.problems import install_problem_handlers
from app.core.security import decode_access_token
from app.core.state import AppState
from app.core.types import Id
from app.queue import service
from app.queue.deps import AdmissionGate, AdmittedFan
from app.queue.models import CloseReason
from app.queue.tokens import decode_admission_token, issue_admission_token, new_jti
from app.queue.worker import AdmissionWorker
from tests.booking.conftest import make_sale
from tests.queue.conftest import Fan, bulk_fans, new_sale, queue_app, tick_until

PROBLEM = "application/problem+json"


def _token(settings: Settings, **overrides: Any) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sale_id": 7,
        "concert_id": 70,
        "user_id": 700,
        "position": 3,
        "expires_at": now + timedelta(minutes=5),
        "issued_at": now,
        "jti": new_jti(),
    } | overrides
    return issue_admission_token(settings, **claims)


def test_round_trip_and_refusals(settings: Settings) -> None:
    claims = decode_admission_token(settings, _token(settings))
    assert (claims.sale_id, claims.concert_id, claims.user_id, claims.position) == (7, 70, 700, 3)
    with pytest.raises(jwt.ExpiredSignatureError):
        decode_admission_token(
            settings, _token(settings, expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )
    forged = settings.model_copy(update={"jwt_secret": SecretStr("x" * 64)})
    with pytest.raises(jwt.InvalidSignatureError):
        decode_admission_token(settings, _token(forged))
    # An access token is not an admission token, and the other way round.
    access = jwt.encode(
        {"sub": "1", "aud": "sale:7", "typ": "access", "iss": settings.jwt_issuer}
        | {"iat": datetime.now(UTC), "exp": datetime.now(UTC) + timedelta(minutes=1)}
        | {"jti": "x"},
        settings.jwt_secret.get_secret_value(),
        settings.jwt_algorithm,
    )
    with pytest.raises(jwt.InvalidTokenError):
        decode_admission_token(settings, access)
    with pytest.raises(jwt.InvalidTokenError):
        decode_access_token(settings, _token(settings))


def _probe_app(state: AppState) -> FastAPI:
    """A booking-shaped route guarded the way the booking router will be."""
    probe = FastAPI()
    probe.state.tr = state
    install_problem_handlers(probe)
    router = APIRouter()

    @router.post("/concerts/{concert_id}/bookings")
    async def strict(concert_id: Id, admission: AdmittedFan) -> dict[str, int]:
        return {"sale_id": admission.sale_id, "user_id": admission.user_id}

    @router.post("/concerts/{concert_id}/gated")
    async def gated(concert_id: Id, admission: AdmissionGate) -> dict[str, int | None]:
        return {"sale_id": admission.sale_id if admission else None}

    probe.include_router(router)
    return probe


@dataclass
class Setup:
    state: AppState
    sale: dict[str, Any]
    fans: list[Fan]
    client: httpx.AsyncClient  # the app
    probe: httpx.AsyncClient  # the probe routes


@pytest.fixture
async def admitted(settings: Settings, admin_headers: dict[str, str]) -> AsyncIterator[Setup]:
    """A sale with two fans admitted and a third waiting, and a client on the probe app."""
    async with queue_app(settings) as (client, state):
        sale = await new_sale(
            client, admin_headers, opens_in=-1, max_active=2, initial_rate=100, max_rate=100
        )
        await service.open_sale(state, sale_id=sale["id"])
        fans = await bulk_fans(state, settings, 3)
        for fan in fans:
            await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)
        worker = AdmissionWorker(state)

        async def two() -> bool:
            return (await service.sale_stats(state, sale_id=sale["id"])).admitted_active == 2

        await tick_until(worker, two)
        await worker.release_all()
        transport = httpx.ASGITransport(app=_probe_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as probe:
            yield Setup(state, sale, fans, client, probe)


async def _token_of(state: AppState, sale: dict[str, Any], fan: Fan) -> str:
    status = await service.status(state, sale_id=sale["id"], user_id=fan.user_id, ip="t")
    assert status.state == "admitted" and status.admission_token
    return status.admission_token


async def test_admitted_fan_gets_through(admitted: Setup) -> None:
    state, sale, fans, probe = admitted.state, admitted.sale, admitted.fans, admitted.probe
    token = await _token_of(state, sale, fans[0])
    r = await probe.post(
        f"/concerts/{sale['concert_id']}/bookings",
        headers=fans[0].headers | {"X-Admission-Token": token},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"sale_id": sale["id"], "user_id": fans[0].user_id}
    claims = decode_admission_token(state.settings, token)
    assert claims.position == 1
    assert claims.expires_at <= datetime.now(UTC) + timedelta(
        seconds=state.settings.admission_token_ttl_s + 1
    )


@pytest.mark.parametrize(
    ("case", "status", "slug"),
    [
        ("missing", 401, "admission-required"),
        ("forged", 401, "admission-invalid"),
        ("garbage", 401, "admission-invalid"),
        ("expired", 401, "admission-expired"),
        ("other_sale", 403, "admission-other-sale"),
        ("other_fan", 403, "admission-other-fan"),
        ("waiting_fan_with_a_copied_claim", 403, "admission-revoked"),
        ("revoked", 403, "admission-revoked"),
    ],
)
async def test_bad_tokens_are_refused(
    admitted: Setup, admin_headers: dict[str, str], case: str, status: int, slug: str
) -> None:
    state, sale, fans, probe = admitted.state, admitted.sale, admitted.fans, admitted.probe
    settings = state.settings
    fan, concert_id = fans[0], sale["concert_id"]
    token: str | None = await _token_of(state, sale, fan)
    assert token is not None
    claims = decode_admission_token(settings, token)
    now = datetime.now(UTC)
    base = {
        "sale_id": claims.sale_id,
        "concert_id": concert_id,
        "user_id": fan.user_id,
        "position": 1,
        "issued_at": now,
        "expires_at": now + timedelta(minutes=5),
        "jti": new_jti(),
    }
    if case == "missing":
        token = None
    elif case == "forged":
        token = issue_admission_token(
            settings.model_copy(update={"jwt_secret": SecretStr(uuid.uuid4().hex * 2)}), **base
        )
    elif case == "garbage":
        token = "not.a.jwt"
    elif case == "expired":
        token = issue_admission_token(settings, **base | {"expires_at": now - timedelta(seconds=1)})
    elif case == "other_sale":
        # A genuine admission, presented to another concert's (another sale's) booking route.
        concert_id = (await new_sale(admitted.client, admin_headers))["concert_id"]
    elif case == "other_fan":
        fan = fans[1]
    elif case == "waiting_fan_with_a_copied_claim":
        # Correctly signed (e.g. a leaked secret) but this fan was never admitted.
        fan = fans[2]
        token = issue_admission_token(settings, **base | {"user_id": fan.user_id})
    elif case == "revoked":
        assert await service.release_admission(state, sale_id=sale["id"], user_id=fan.user_id)
    headers = fan.headers | ({"X-Admission-Token": token} if token else {})
    r = await probe.post(f"/concerts/{concert_id}/bookings", headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"].endswith("/" + slug)
    if status == 401:
        assert r.headers["www-authenticate"].startswith("AdmissionToken")


async def test_gate_applies_only_to_concerts_with_a_sale(
    admitted: Setup, admin_headers: dict[str, str]
) -> None:
    state, sale, fans, probe = admitted.state, admitted.sale, admitted.fans, admitted.probe
    plain = await make_sale(admitted.client, admin_headers)  # a concert sold without a waiting room
    r = await probe.post(f"/concerts/{plain.concert_id}/gated", headers=fans[2].headers)
    assert r.status_code == 200 and r.json() == {"sale_id": None}
    r = await probe.post(f"/concerts/{sale['concert_id']}/gated", headers=fans[2].headers)
    assert r.status_code == 401
    assert r.json()["join_url"] == f"/sales/{sale['id']}/queue"
    token = await _token_of(state, sale, fans[0])
    r = await probe.post(
        f"/concerts/{sale['concert_id']}/gated",
        headers=fans[0].headers | {"X-Admission-Token": token},
    )
    assert r.status_code == 200 and r.json() == {"sale_id": sale["id"]}
    # Closing the sale keeps the concert gated and revokes the admissions.
    await service.close_sale(state, sale_id=sale["id"], reason=CloseReason.manual)
    r = await probe.post(
        f"/concerts/{sale['concert_id']}/gated",
        headers=fans[0].headers | {"X-Admission-Token": token},
    )
    assert r.status_code == 403 and r.json()["type"].endswith("/admission-revoked")


async def test_real_booking_route_requires_admission_and_pay_releases_it(admitted: Setup) -> None:
    state, sale, fans, client = admitted.state, admitted.sale, admitted.fans, admitted.client
    url = f"/concerts/{sale['concert_id']}/bookings"
    token = await _token_of(state, sale, fans[0])
    # No token, another fan's token, or a waiting fan: refused, and nothing is held.
    missing = await client.post(url, json={"quantity": 1}, headers=fans[2].headers)
    assert missing.status_code == 401 and missing.json()["type"].endswith("/admission-required")
    stolen = await client.post(
        url, json={"quantity": 1}, headers=fans[2].headers | {"X-Admission-Token": token}
    )
    assert stolen.status_code == 403 and stolen.json()["type"].endswith("/admission-other-fan")
    ga = await client.get(f"/concerts/{sale['concert_id']}/general-admission")
    stock = ga.json()["stock"]
    assert stock == ga.json()["total"]
    # The admitted fan books and pays; completing the purchase ends the admission.
    held = await client.post(
        url,
        json={"quantity": 1, "strategy": "atomic"},
        headers=fans[0].headers | {"X-Admission-Token": token},
    )
    assert held.status_code == 201, held.text
    paid = await client.post(f"/bookings/{held.json()['id']}/pay", headers=fans[0].headers)
    assert paid.status_code == 200 and paid.json()["status"] == "confirmed"
    again = await client.post(
        url, json={"quantity": 1}, headers=fans[0].headers | {"X-Admission-Token": token}
    )
    assert again.status_code == 403 and again.json()["type"].endswith("/admission-revoked")
    stats = await service.sale_stats(state, sale_id=sale["id"])
    assert stats.admitted_active == 1


async def test_sale_concert_books_through_the_kafka_pipeline_by_default(admitted: Setup) -> None:
    state, sale, fans, client = admitted.state, admitted.sale, admitted.fans, admitted.client
    token = await _token_of(state, sale, fans[1])
    r = await client.post(
        f"/concerts/{sale['concert_id']}/bookings",
        json={"quantity": 1},
        headers=fans[1].headers | {"X-Admission-Token": token},
    )
    # 202 (accepted after the broker's ack), where the configured default strategy gives 201.
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/bookings/requests/{r.json()['request_id']}"
