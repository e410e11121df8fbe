"""Booking fixtures: on-sale concerts with seat maps and stock, and many fans with tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.core.config import Settings
from app.core.security import hash_password, issue_access_token
from tests.catalog.test_catalog import make_concert
from tests.conftest import PASSWORD


@dataclass
class Sale:
    concert_id: int
    seat_ids: list[int]
    stock: int


async def make_sale(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    *,
    rows: int = 5,
    per_row: int = 10,
    stock: int = 100,
    max_per_user: int = 4,
) -> Sale:
    concert = await make_concert(client, admin)
    cid = concert["id"]
    r = await client.post(
        f"/concerts/{cid}/seats:generate",
        json={
            "sections": [
                {"name": "Floor", "rows": rows, "seats_per_row": per_row, "price": 150_000}
            ]
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await client.put(
        f"/concerts/{cid}/general-admission",
        json={"quantity": stock, "price": 99_000},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/concerts/{cid}",
        json={"status": "on_sale", "max_tickets_per_user": max_per_user},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    seats = (await client.get(f"/concerts/{cid}/seats", params={"limit": 1000})).json()["items"]
    return Sale(cid, [s["id"] for s in seats], stock)


async def hold(
    client: httpx.AsyncClient, sale: Sale, fan: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    """POST a booking request for `sale` as `fan`; the response body."""
    r = await client.post(f"/concerts/{sale.concert_id}/bookings", json=body, headers=fan)
    return dict(r.json())


@pytest.fixture(scope="session")
async def fan_tokens(app: Any, settings: Settings) -> list[dict[str, str]]:
    """300 fans created in bulk (one Argon2 hash shared) with real access tokens."""
    state = app.state.tr
    pw_hash = hash_password(PASSWORD)
    tag = uuid.uuid4().hex[:8]
    async with state.sessionmaker() as session, session.begin():
        ids = (
            (
                await session.execute(
                    text(
                        "INSERT INTO app_user (email, password_hash, display_name)"
                        " SELECT 'bulk-' || :tag || '-' || g || '@example.com', :h, 'Fan ' || g"
                        " FROM generate_series(1, 300) g RETURNING id"
                    ),
                    {"tag": tag, "h": pw_hash},
                )
            )
            .scalars()
            .all()
        )
    return [
        {"Authorization": f"Bearer {issue_access_token(settings, user_id=i, role='fan')[0]}"}
        for i in ids
    ]
