"""Auth against the real app, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from sqlalchemy import select

from app.auth.models import RefreshToken
from app.core.config import Settings
from app.core.security import AccessTokenVerifier
from app.main import create_app
from tests.conftest import PASSWORD, signup_and_login, unique_email

PROBLEM = "application/problem+json"


async def test_signup_normalizes_email_and_rejects_duplicates(client: httpx.AsyncClient) -> None:
    email = unique_email()
    r = await client.post(
        "/auth/signup",
        json={"email": f"  {email.upper()} ", "password": PASSWORD, "display_name": "Mina"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["email"] == email
    assert body["display_name"] == "Mina"
    assert body["role"] == "fan"
    assert "password" not in json.dumps(body)
    again = await client.post(
        "/auth/signup", json={"email": email, "password": PASSWORD, "display_name": "X"}
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert again.json()["type"].endswith("/email-taken")


@pytest.mark.parametrize("password", ["short", "aaaaaaaaaaaaaa"])
async def test_weak_passwords_rejected_without_creating_account(
    client: httpx.AsyncClient, password: str
) -> None:
    email = unique_email()
    r = await client.post(
        "/auth/signup", json={"email": email, "password": password, "display_name": "Fan"}
    )
    assert r.status_code == 422
    assert r.json()["type"].endswith("/weak-password")
    login = await client.post("/auth/login", json={"email": email, "password": password})
    assert login.status_code == 401


async def test_validation_errors_list_fields(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/signup", json={"email": "not-an-email", "display_name": ""})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"email", "password", "display_name"} <= fields


async def test_login_does_not_reveal_whether_email_exists(client: httpx.AsyncClient) -> None:
    tokens = await signup_and_login(client)
    wrong_pw = await client.post(
        "/auth/login", json={"email": tokens["email"], "password": "wrong password 123"}
    )
    no_user = await client.post(
        "/auth/login", json={"email": unique_email(), "password": "wrong password 123"}
    )
    assert wrong_pw.status_code == no_user.status_code == 401
    a, b = wrong_pw.json(), no_user.json()
    a.pop("instance"), b.pop("instance")
    assert a == b


async def test_access_token_claims_and_me(client: httpx.AsyncClient, settings: Settings) -> None:
    tokens = await signup_and_login(client)
    claims = jwt.decode(
        tokens["access_token"],
        settings.jwt_secret.get_secret_value(),
        algorithms=["HS256"],
        audience=settings.jwt_audience,
    )
    assert {"exp", "iat", "jti", "aud", "role", "sub"} <= claims.keys()
    assert claims["role"] == "fan"
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["email"] == tokens["email"]


@pytest.mark.parametrize(
    "mutate",
    [
        "none_alg",
        "wrong_key",
        "expired",
        "wrong_audience",
    ],
)
async def test_tampered_tokens_rejected(
    client: httpx.AsyncClient, settings: Settings, mutate: str
) -> None:
    tokens = await signup_and_login(client)
    # The genuine token is verified (and remembered) first: a tampered copy must still fail.
    genuine = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert genuine.status_code == 200
    secret = settings.jwt_secret.get_secret_value()
    claims = jwt.decode(
        tokens["access_token"], secret, algorithms=["HS256"], audience=settings.jwt_audience
    )
    if mutate == "none_alg":
        claims["role"] = "admin"
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token = f"{header}.{payload}."
    elif mutate == "wrong_key":
        token = jwt.encode(claims | {"role": "admin"}, "another-secret-another-secret-32b", "HS256")
    elif mutate == "expired":
        token = jwt.encode(claims | {"exp": claims["iat"] - 10}, secret, "HS256")
    else:
        token = jwt.encode(claims | {"aud": "someone-else"}, secret, "HS256")
    r = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["www-authenticate"] == "Bearer"


async def test_refresh_rotates_and_reuse_revokes_family(client: httpx.AsyncClient) -> None:
    tokens = await signup_and_login(client)
    first = tokens["refresh_token"]
    r1 = await client.post("/auth/refresh", json={"refresh_token": first})
    assert r1.status_code == 200
    second = r1.json()["refresh_token"]
    assert second != first
    # Replaying the rotated token is theft: the whole family dies, including `second`.
    replay = await client.post("/auth/refresh", json={"refresh_token": first})
    assert replay.status_code == 401
    assert replay.json()["type"].endswith("/refresh-token-reused")
    after = await client.post("/auth/refresh", json={"refresh_token": second})
    assert after.status_code == 401


async def test_concurrent_refresh_of_one_token_rotates_once(
    client: httpx.AsyncClient, app: object
) -> None:
    tokens = await signup_and_login(client)
    results = await asyncio.gather(
        *(
            client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            for _ in range(8)
        )
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) == {200, 401}
    raw_id = tokens["refresh_token"].split(".")[0]
    token_id = uuid.UUID(bytes=base64.urlsafe_b64decode(raw_id + "=" * (-len(raw_id) % 4)))
    state = app.state.tr  # type: ignore[attr-defined]
    async with state.sessionmaker() as session:
        family_id = await session.scalar(
            select(RefreshToken.family_id).where(RefreshToken.id == token_id)
        )
        family = (
            await session.scalars(select(RefreshToken).where(RefreshToken.family_id == family_id))
        ).all()
    # One rotation happened (2 tokens); the losers replayed a used token, so the family is revoked.
    assert len(family) == 2
    assert all(t.revoked_at is not None for t in family)


async def test_logout_revokes_refresh_and_access(client: httpx.AsyncClient) -> None:
    tokens = await signup_and_login(client)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    r = await client.post(
        "/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
    )
    assert r.status_code == 204
    assert (await client.get("/users/me", headers=headers)).status_code == 401
    refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401


async def test_garbage_refresh_token_is_401_not_500(client: httpx.AsyncClient) -> None:
    for token in ["x" * 20, "!!!!.????????????", "AAAAAAAAAAAAAAAAAAAAAA.secret-secret"]:
        r = await client.post("/auth/refresh", json={"refresh_token": token})
        assert r.status_code == 401, (token, r.text)


async def test_login_rate_limited_per_account(settings: Settings) -> None:
    limited = settings.model_copy(update={"login_limit_per_account": 3, "login_limit_window_s": 60})
    application = create_app(limited)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            tokens = await signup_and_login(c)
            email = tokens["email"]
            # signup_and_login used one attempt; two more wrong ones are still under the limit.
            for _ in range(2):
                r = await c.post(
                    "/auth/login", json={"email": email, "password": "wrong password 1"}
                )
                assert r.status_code == 401
            blocked = await c.post("/auth/login", json={"email": email, "password": PASSWORD})
            assert blocked.status_code == 429
            assert 1 <= int(blocked.headers["retry-after"]) <= 60
            assert blocked.json()["type"].endswith("/rate-limited")
            # Another account from the same IP is unaffected by this account's limit.
            other = await signup_and_login(c)
            assert other["access_token"]


async def test_login_rate_limited_per_ip(settings: Settings) -> None:
    limited = settings.model_copy(update={"login_limit_per_ip": 4, "login_limit_window_s": 60})
    application = create_app(limited)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("10.9.8.7", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            codes = [
                (
                    await c.post(
                        "/auth/login", json={"email": unique_email(), "password": "whatever 123"}
                    )
                ).status_code
                for _ in range(6)
            ]
    assert codes[:4] == [401] * 4
    assert codes[4:] == [429, 429]


async def test_a_remembered_token_still_expires(settings: Settings) -> None:
    verifier = AccessTokenVerifier(settings)
    now = datetime.now(UTC)
    payload = {
        "sub": "7",
        "role": "fan",
        "jti": "j-1",
        "iat": now,
        "exp": now + timedelta(seconds=2),
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "typ": "access",
    }
    token = jwt.encode(payload, settings.jwt_secret.get_secret_value(), settings.jwt_algorithm)
    assert verifier.verify(token).user_id == 7
    assert verifier.verify(token).user_id == 7  # from memory
    await asyncio.sleep(2.5)
    with pytest.raises(jwt.ExpiredSignatureError):
        verifier.verify(token)
    with pytest.raises(jwt.ExpiredSignatureError):  # and again, now verified in full
        verifier.verify(token)
