"""A real API process (uvicorn, DEBUG logging, its own secrets) exercised through everything
that handles a secret: passwords, access and refresh tokens, stream keys, the RTMP callback
secret, the database password. Its log must contain none of them. Also the body size limit
over real HTTP, where uvicorn (not the test transport) frames the request."""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.auth.models import Role
from app.auth.service import create_user
from app.core.config import Settings
from app.devstack.broker import free_port, stop_process
from tests.booking.conftest import make_sale
from tests.conftest import LiveServer, start_api, unique_email

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")


class Secrets(dict[str, str]):
    """Every secret the run handled, by what it is."""


@pytest.fixture(scope="module")
def planted() -> Secrets:
    return Secrets(
        jwt_secret="jwt-" + secrets.token_urlsafe(32),
        callback_secret="rtmp-" + secrets.token_urlsafe(24),
        db_password="dbpw-" + secrets.token_urlsafe(18),
    )


@pytest.fixture(scope="module")
def own_api(
    settings: Settings, planted: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    port = free_port()
    # The local PostgreSQL trusts 127.0.0.1, so any password is accepted: the URL carries one
    # only to see whether it ever reaches a log line.
    db_url = make_url(settings.database_url).set(password=planted["db_password"])
    env = os.environ | {
        "TR_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "TR_REDIS_URL": settings.redis_url,
        "TR_REDIS_PREFIX": f"{settings.redis_prefix}-logs{uuid.uuid4().hex[:6]}",
        "TR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TR_PAYMENTS_URL": settings.payments_url,
        "TR_JWT_SECRET": planted["jwt_secret"],
        "TR_STREAMING_CALLBACK_SECRET": planted["callback_secret"],
        "TR_API_PORT": str(port),
        "TR_API_WORKERS": "1",
        "TR_LOG_LEVEL": "DEBUG",
        "TR_MAX_BODY_BYTES": "4096",
        "TR_DB_POOL_SIZE": "3",
        "TR_DB_MAX_OVERFLOW": "2",
        "TR_LOGIN_LIMIT_PER_ACCOUNT": "1000",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path_factory.mktemp("api-logs") / "api.log"
    server = start_api(env, log_path, f"http://127.0.0.1:{port}")
    yield server
    stop_process(server.proc.pid)


@pytest.fixture(scope="module")
async def api(own_api: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=own_api.url, timeout=30) as c:
        yield c


async def test_request_body_limit_over_real_http(api: httpx.AsyncClient) -> None:
    big = {"email": unique_email(), "password": "p" * 10_000}
    r = await api.post("/auth/login", json=big)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "https://ticketrush.io/problems/payload-too-large"

    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(20):
            yield b"q" * 1000
        yield b'"}'

    r = await api.post(
        "/auth/login", content=chunked(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413
    # The server still answers normally afterwards.
    assert (await api.get("/healthz")).status_code == 200


async def _exercise(api: httpx.AsyncClient, app: Any, planted: Secrets) -> None:
    """Every secret-bearing path once, successes and refusals."""
    password = "pw-" + secrets.token_urlsafe(16)
    wrong = "wrong-" + secrets.token_urlsafe(16)
    planted |= {"password": password, "wrong_password": wrong}
    email = unique_email("logs")
    r = await api.post(
        "/auth/signup", json={"email": email, "password": password, "display_name": "Logs"}
    )
    assert r.status_code == 201, r.text
    assert (
        await api.post("/auth/login", json={"email": email, "password": wrong})
    ).status_code == 401
    too_long = "long-" + "z" * 300
    planted["too_long_password"] = too_long
    r = await api.post(
        "/auth/signup", json={"email": email, "password": too_long, "display_name": "L"}
    )
    assert r.status_code == 422
    pair = (await api.post("/auth/login", json={"email": email, "password": password})).json()
    planted |= {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]}
    planted["refresh_secret_part"] = pair["refresh_token"].split(".", 1)[1]
    rotated = (
        await api.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).json()
    planted |= {
        "rotated_access": rotated["access_token"],
        "rotated_refresh": rotated["refresh_token"],
    }
    # Reuse of a rotated token (theft detection) and a forged access token.
    assert (
        await api.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).status_code == 401
    fan = {"Authorization": f"Bearer {rotated['access_token']}"}
    forged = pair["access_token"][:-4] + "AAAA"
    planted["forged_access"] = forged
    assert (
        await api.get("/users/me", headers={"Authorization": f"Bearer {forged}"})
    ).status_code == 401

    admin_email, admin_password = unique_email("logs-admin"), "adm-" + secrets.token_urlsafe(16)
    planted["admin_password"] = admin_password
    async with app.state.tr.sessionmaker() as session:
        await create_user(
            session, email=admin_email, password=admin_password, display_name="A", role=Role.admin
        )
    admin_pair = (
        await api.post("/auth/login", json={"email": admin_email, "password": admin_password})
    ).json()
    planted["admin_access"] = admin_pair["access_token"]
    admin = {"Authorization": f"Bearer {admin_pair['access_token']}"}

    sale = await make_sale(api, admin)
    held = await api.post(
        f"/concerts/{sale.concert_id}/bookings",
        json={"quantity": 1},
        headers=fan | {"Idempotency-Key": "logs-" + uuid.uuid4().hex},
    )
    assert held.status_code == 201, held.text
    paid = await api.post(f"/bookings/{held.json()['id']}/pay", headers=fan)
    assert paid.status_code in (200, 402), paid.text  # the simulator declines a few

    artist_id = (await api.get(f"/concerts/{sale.concert_id}")).json()["artist"]["id"]
    channel = (
        await api.post("/channels", json={"artist_id": artist_id, "title": "Logs"}, headers=admin)
    ).json()
    planted["stream_key"] = channel["stream_key"]
    rotated_key = (
        await api.post(f"/channels/{channel['id']}/stream-key:rotate", headers=admin)
    ).json()["stream_key"]
    planted["rotated_stream_key"] = rotated_key
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def callback(key: str, secret: str) -> Any:
        return api.post(
            "/rtmp/on_publish",
            params={"secret": secret},
            content=f"app=live&name={key}&clientid=1&addr=127.0.0.1",
            headers=form,
        )

    assert (await callback(channel["stream_key"], planted["callback_secret"])).status_code == 403
    assert (await callback(rotated_key, "not-the-secret")).status_code == 403
    assert (await callback(rotated_key, planted["callback_secret"])).status_code == 302
    done = await api.post(
        "/rtmp/on_publish_done",
        params={"secret": planted["callback_secret"]},
        content=f"app=live&name={rotated_key}&clientid=1",
        headers=form,
    )
    assert done.status_code == 204
    r = await api.post(
        "/auth/logout", json={"refresh_token": rotated["refresh_token"]}, headers=fan
    )
    assert r.status_code == 204


async def test_no_secret_is_ever_logged(
    own_api: LiveServer, api: httpx.AsyncClient, app: Any, planted: Secrets
) -> None:
    await _exercise(api, app, planted)
    stop_process(own_api.proc.pid)  # flushes and closes the log
    log = Path(own_api.log_path).read_text(errors="replace")
    # The log is the real one: the app's own events (a refused publish) are in it.
    assert "rtmp_publish_refused" in log, log[-2000:]
    leaked = {name for name, value in planted.items() if value in log}
    assert not leaked, f"secrets in the API log: {sorted(leaked)}"
    assert not JWT.search(log), JWT.search(log)
