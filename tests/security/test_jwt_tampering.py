"""Forged, altered, expired and misdirected tokens against real routes: access tokens (Bearer)
on a fan route and an admin route, admission tokens (X-Admission-Token) on the booking route of
a sale. Every one is refused with problem+json and changes nothing; the genuine token passes."""

from __future__ import annotations

import base64
import json
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import func, select

from app.booking.models import Booking
from app.catalog.agency.models import Agency
from app.core.config import Settings
from app.core.state import AppState
from app.queue import service as queue_service
from app.queue.tokens import decode_admission_token, issue_admission_token, new_jti
from app.queue.worker import AdmissionWorker
from tests.conftest import signup_and_login
from tests.queue.conftest import bulk_fans, new_sale, queue_app, tick_until

PROBLEM = "application/problem+json"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, default=str).encode()).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def tamper(genuine: str, settings: Settings, case: str) -> str:
    """`genuine` changed as an attacker would: most cases also try to become an admin."""
    secret = settings.jwt_secret.get_secret_value()
    claims = jwt.decode(genuine, options={"verify_signature": False})
    escalated = claims | {"role": "admin"}
    now = int(datetime.now(UTC).timestamp())
    if case == "alg_none":
        return _unsigned(escalated)
    if case == "wrong_key":
        return jwt.encode(escalated, "an-attacker-chosen-secret-of-32-bytes!", "HS256")
    if case == "other_hmac_algorithm":
        with warnings.catch_warnings():  # the app's key is short for HS512; beside the point
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(escalated, secret, "HS512")
    if case == "payload_swapped_signature_kept":
        header, _, signature = genuine.split(".")
        return f"{header}.{_b64(escalated)}.{signature}"
    if case == "signature_stripped":
        return genuine.rsplit(".", 1)[0] + "."
    if case == "expired":
        return jwt.encode(claims | {"iat": now - 120, "exp": now - 60}, secret, "HS256")
    if case == "wrong_audience":
        return jwt.encode(claims | {"aud": "another-service"}, secret, "HS256")
    if case == "wrong_issuer":
        return jwt.encode(claims | {"iss": "someone-else"}, secret, "HS256")
    if case == "no_expiry":
        return jwt.encode({k: v for k, v in escalated.items() if k != "exp"}, secret, "HS256")
    raise AssertionError(case)


ACCESS_CASES = [
    "alg_none",
    "wrong_key",
    "other_hmac_algorithm",
    "payload_swapped_signature_kept",
    "signature_stripped",
    "expired",
    "wrong_audience",
    "wrong_issuer",
    "no_expiry",
    "admission_token_as_access_token",
    "garbage",
]


async def _count(app: Any, model: type[Any]) -> int:
    async with app.state.tr.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture(scope="module")
async def genuine(app: Any) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return str((await signup_and_login(c))["access_token"])


@pytest.mark.parametrize("case", ACCESS_CASES)
async def test_tampered_access_tokens_are_refused(
    client: httpx.AsyncClient, app: Any, settings: Settings, genuine: str, case: str
) -> None:
    if case == "admission_token_as_access_token":
        sub = jwt.decode(genuine, options={"verify_signature": False})["sub"]
        now = datetime.now(UTC)
        token = issue_admission_token(
            settings,
            sale_id=1,
            concert_id=1,
            user_id=int(sub),
            position=1,
            expires_at=now + timedelta(minutes=5),
            issued_at=now,
            jti=new_jti(),
        )
    elif case == "garbage":
        token = "not-a-jwt"
    else:
        token = tamper(genuine, settings, case)
    agencies = await _count(app, Agency)
    headers = {"Authorization": f"Bearer {token}"}
    attempts = [
        await client.get("/users/me", headers=headers),
        await client.get("/users/me/bookings", headers=headers),
        await client.post(
            "/agencies", json={"name": f"Forged {uuid.uuid4().hex[:8]}"}, headers=headers
        ),
    ]
    for r in attempts:
        assert r.status_code == 401, (r.request.url, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["type"] == "https://ticketrush.io/problems/invalid-token"
        assert r.headers["www-authenticate"] == "Bearer"
    assert await _count(app, Agency) == agencies
    # The control: the token it was made from works.
    ok = await client.get("/users/me", headers={"Authorization": f"Bearer {genuine}"})
    assert ok.status_code == 200


ADMISSION_CASES = [
    ("missing", 401, "admission-required"),
    ("alg_none", 401, "admission-invalid"),
    ("wrong_key", 401, "admission-invalid"),
    ("other_hmac_algorithm", 401, "admission-invalid"),
    ("payload_swapped_signature_kept", 401, "admission-invalid"),
    ("expired", 401, "admission-expired"),
    ("wrong_audience", 401, "admission-invalid"),
    ("access_token_as_admission_token", 401, "admission-invalid"),
    ("other_sale", 403, "admission-other-sale"),
    ("other_sale_audience_same_concert", 403, "admission-revoked"),
    ("other_user_presents_it", 403, "admission-other-fan"),
    ("signed_for_a_waiting_fan", 403, "admission-revoked"),
]


@pytest.fixture(scope="module")
async def admitted(settings: Settings, admin_headers: dict[str, str]) -> Any:
    """An open sale with fan 0 admitted (max 1 at once) and fan 1 waiting behind."""
    async with queue_app(settings) as (client, state):
        sale = await new_sale(
            client, admin_headers, opens_in=-1, max_active=1, initial_rate=100, max_rate=100
        )
        await queue_service.open_sale(state, sale_id=sale["id"])
        fans = await bulk_fans(state, settings, 2)
        for fan in fans:
            r = await client.post(f"/sales/{sale['id']}/queue", headers=fan.headers)
            assert r.status_code == 201, r.text
        worker = AdmissionWorker(state)

        async def one() -> bool:
            return (await queue_service.sale_stats(state, sale_id=sale["id"])).admitted_active == 1

        await tick_until(worker, one)
        await worker.release_all()
        status = await queue_service.status(
            state, sale_id=sale["id"], user_id=fans[0].user_id, ip="t"
        )
        assert status.admission_token
        yield client, state, sale, fans, status.admission_token


async def _bookings(state: AppState, concert_id: int) -> int:
    async with state.sessionmaker() as session:
        query = select(func.count()).select_from(Booking).where(Booking.concert_id == concert_id)
        return int(await session.scalar(query) or 0)


@pytest.mark.parametrize(("case", "status", "slug"), ADMISSION_CASES)
async def test_tampered_admission_tokens_are_refused(
    admitted: Any, settings: Settings, case: str, status: int, slug: str
) -> None:
    client, state, sale, fans, genuine = admitted
    concert_id, fan = sale["concert_id"], fans[0]
    claims = decode_admission_token(settings, genuine)
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
    token: str | None
    if case == "missing":
        token = None
    elif case == "access_token_as_admission_token":
        token = fan.headers["Authorization"].split()[1]
    elif case == "other_sale":
        # Correctly signed, for another sale and concert (as that sale's worker would issue).
        token = issue_admission_token(
            settings, **base | {"sale_id": claims.sale_id + 10_000, "concert_id": concert_id + 1}
        )
    elif case == "other_sale_audience_same_concert":
        token = issue_admission_token(settings, **base | {"sale_id": claims.sale_id + 10_000})
    elif case == "other_user_presents_it":
        token, fan = genuine, fans[1]
    elif case == "signed_for_a_waiting_fan":
        # What a leaked signing secret would allow: the waiting fan is still not admitted.
        fan = fans[1]
        token = issue_admission_token(settings, **base | {"user_id": fan.user_id})
    elif case == "wrong_audience":
        secret = settings.jwt_secret.get_secret_value()
        payload = jwt.decode(genuine, options={"verify_signature": False})
        token = jwt.encode(payload | {"aud": settings.jwt_audience}, secret, "HS256")
    else:
        token = tamper(genuine, settings, case)
    before = await _bookings(state, concert_id)
    headers = fan.headers | ({"X-Admission-Token": token} if token else {})
    r = await client.post(
        f"/concerts/{concert_id}/bookings",
        json={"quantity": 1, "strategy": "atomic"},
        headers=headers,
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == f"https://ticketrush.io/problems/{slug}"
    assert await _bookings(state, concert_id) == before


async def test_genuine_admission_token_books(admitted: Any) -> None:
    client, _, sale, fans, genuine = admitted
    r = await client.post(
        f"/concerts/{sale['concert_id']}/bookings",
        json={"quantity": 1, "strategy": "atomic"},
        headers=fans[0].headers | {"X-Admission-Token": genuine},
    )
    assert r.status_code == 201, r.text
