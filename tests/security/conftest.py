"""A world of its own for the security tests: a fresh database and Redis prefix, an admin, fan A
who owns things (a held booking, a pending Kafka-pipeline request, a place in a queue) and fan
B who owns nothing, plus a catalog, a sale, a live channel and a chat room with a message."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.auth.models import Role
from app.auth.service import create_user
from app.chat import service as chat_service
from app.core.config import Settings
from app.core.migrate import upgrade
from app.core.security import AccessClaims, issue_access_token
from app.core.state import AppState
from app.devstack.broker import ensure_topics
from app.main import create_app
from tests.booking.conftest import make_sale
from tests.conftest import PASSWORD, unique_email
from tests.fixtures.databases import create_database, drop_database
from tests.queue.conftest import new_sale

ROLES = ("anonymous", "other", "fan", "admin")  # fan = A (owns things), other = B
PROBLEM = "application/problem+json"
PROBLEM_BASE = "https://ticketrush.io/problems/"


@dataclass
class World:
    client: httpx.AsyncClient
    state: AppState
    users: dict[str, int]  # role -> user id (anonymous acts with A's data where one is needed)
    emails: dict[str, str]
    auth: dict[str, dict[str, str]]  # role -> Authorization header (none for anonymous)
    ids: dict[str, Any] = field(default_factory=dict)  # default path parameters

    @property
    def admin(self) -> dict[str, str]:
        return self.auth["admin"]

    async def login(self, role: str) -> dict[str, Any]:
        """A new token pair of `role`'s user (A for anonymous)."""
        email = self.emails["fan" if role == "anonymous" else role]
        r = await self.client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def hold(self, role: str = "fan", **body: Any) -> dict[str, Any]:
        r = await self.client.post(
            f"/concerts/{self.ids['concert_id']}/bookings",
            json=body or {"quantity": 1},
            headers=self.auth[role],
        )
        assert r.status_code in (201, 202), r.text
        return dict(r.json())

    async def chat_message(self) -> str:
        room = await chat_service.get_room(self.state, name=self.ids["room"])
        claims = AccessClaims(
            user_id=self.users["fan"],
            role="fan",
            jti=uuid.uuid4().hex,
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        message = await chat_service.post_message(self.state, room=room, user=claims, body=b"hello")
        return message.id

    async def snapshot(self) -> dict[str, str]:
        """A digest of every table and of every Redis key of this world except rate-limit
        counters (a refused request still counts against its caller's limit)."""
        async with self.state.engine.connect() as conn:
            tables = (
                await conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalars()
            query = " UNION ALL ".join(
                f"SELECT 'table {t}', md5(coalesce(string_agg(md5(x::text), ','"
                f" ORDER BY md5(x::text)), '')) FROM \"{t}\" x"
                for t in sorted(tables)
            )
            out = {str(name): str(digest) for name, digest in (await conn.execute(text(query)))}
        redis = self.state.redis
        prefix = self.state.settings.redis_prefix
        keys = [
            key
            async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)
            # Rate-limit windows count refusals too; the concert -> sale lookup is re-written
            # by every sale sync (a cache, the same value).
            if b":rl:" not in key and b":queue:concert:" not in key
        ]
        values = await asyncio.gather(*(redis.dump(k) for k in keys))
        ttls = await asyncio.gather(*(redis.pttl(k) for k in keys))
        for key, value, ttl in zip(keys, values, ttls, strict=True):
            if value is not None and ttl != -2:  # -2: it expired while being read
                digest = hashlib.sha256(value).hexdigest()
                out[f"redis {key.decode()}"] = digest + (EXPIRES if ttl > 0 else "")
        return out


EXPIRES = "~"


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What differs, except keys that simply reached their TTL (cache entries, heartbeats)."""
    return sorted(
        k
        for k in before.keys() | after.keys()
        if before.get(k) != after.get(k) and not (k not in after and before[k].endswith(EXPIRES))
    )


def world_settings(settings: Settings, database_url: str) -> Settings:
    return settings.model_copy(
        update={
            "database_url": database_url,
            "redis_prefix": f"{settings.redis_prefix}-sec{uuid.uuid4().hex[:6]}",
            # The SSE status stream ends by itself, so a test can read it to the end.
            "queue_push_max_s": 0.5,
            "queue_push_tick_s": 0.1,
            # Nothing of the world may lapse while a slow machine works through the matrix.
            "queue_grace_s": 3600.0,
            "hold_ttl_s": 3600,
        }
    )


@pytest.fixture(scope="module")
async def world(settings: Settings) -> AsyncIterator[World]:
    url = await asyncio.to_thread(create_database, "tr_sec")
    await asyncio.to_thread(upgrade, url)
    custom = world_settings(settings, url)
    await ensure_topics(custom.kafka_bootstrap, custom.kafka_topics)
    application = create_app(custom)
    try:
        async with (
            application.router.lifespan_context(application),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application), base_url="http://t"
            ) as client,
        ):
            yield await _build(client, application.state.tr)
    finally:
        await asyncio.to_thread(drop_database, url)


async def _build(client: httpx.AsyncClient, state: AppState) -> World:
    users: dict[str, int] = {}
    emails: dict[str, str] = {}
    auth: dict[str, dict[str, str]] = {"anonymous": {}}
    for role, db_role in (("fan", Role.fan), ("other", Role.fan), ("admin", Role.admin)):
        emails[role] = unique_email(role)
        async with state.sessionmaker() as session:
            user = await create_user(
                session, email=emails[role], password=PASSWORD, display_name=role, role=db_role
            )
        users[role] = user.id
        token, _ = issue_access_token(state.settings, user_id=user.id, role=db_role.value)
        auth[role] = {"Authorization": f"Bearer {token}"}
    world = World(client, state, users, emails, auth)
    admin = world.admin

    sale = await make_sale(client, admin, max_per_user=20)
    concert = (await client.get(f"/concerts/{sale.concert_id}")).json()
    artist = (await client.get(f"/artists/{concert['artist']['id']}")).json()
    world.ids |= {
        "concert_id": sale.concert_id,
        "artist_id": artist["id"],
        "agency_id": artist["agency_id"],
        "venue_id": concert["venue"]["id"],
        "room": f"artist.{artist['id']}",
        "kind": "mutes",
        "user_id": users["other"],
    }
    world.ids["booking_id"] = (await world.hold())["id"]
    # A pending request of the Kafka pipeline (no consumer runs here), on a concert of its own.
    pipeline = await make_sale(client, admin, max_per_user=20)
    r = await client.post(
        f"/concerts/{pipeline.concert_id}/bookings",
        json={"quantity": 1, "strategy": "redis_claim"},
        headers=auth["fan"],
    )
    assert r.status_code == 202, r.text
    world.ids["request_id"] = r.json()["request_id"]
    world.ids["pipeline_concert_id"] = pipeline.concert_id

    queue_sale = await new_sale(client, admin, opens_in=1800)
    world.ids["sale_id"] = queue_sale["id"]
    r = await client.post(f"/sales/{queue_sale['id']}/queue", headers=auth["fan"])
    assert r.status_code == 201, r.text

    r = await client.post(
        "/channels", json={"artist_id": artist["id"], "title": "Live"}, headers=admin
    )
    assert r.status_code == 201, r.text
    world.ids["channel_id"] = r.json()["id"]
    world.ids["stream_key"] = r.json()["stream_key"]
    secret = state.settings.streaming_callback_secret.get_secret_value()
    r = await client.post(
        "/rtmp/on_publish",
        params={"secret": secret},
        content=f"app=live&name={world.ids['stream_key']}&clientid=7&addr=127.0.0.1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 302, r.text
    world.ids["message_id"] = await world.chat_message()
    return world
