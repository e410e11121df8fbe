"""Authorization matrix: every route of the app x (anonymous, fan A, other fan B, admin) gets
the status in the table below, every refusal is problem+json with a stable type and leaves the
database and Redis exactly as they were.

The table is checked against the app's routes in both directions, so a new route without an
entry (or an entry for a removed route) fails `test_every_route_is_in_the_matrix`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount, WebSocketRoute

from app.chat import service as chat_service
from app.chat.schemas import SanctionCreate
from tests.booking.conftest import make_sale
from tests.catalog.test_catalog import make_agency, make_artist, make_concert, make_venue
from tests.conftest import PASSWORD, unique_email
from tests.queue.conftest import new_sale
from tests.security.conftest import PROBLEM, PROBLEM_BASE, ROLES, World, changes


@dataclass
class Call:
    """What one role sends: path parameters over the world's defaults, body, headers."""

    params: dict[str, Any]
    json: Any = None
    content: str | None = None
    query: dict[str, str] | None = None
    headers: dict[str, str] | None = None  # replaces the role's Authorization header
    accept: str | None = None


Prepare = Callable[[World, str], Awaitable[Call]]


@dataclass(frozen=True)
class Expect:
    anonymous: int
    fan: int
    other: int
    admin: int
    prepare: Prepare | None = None
    # Roles whose success must be a no-op (e.g. B "leaving" a queue B is not in).
    noop: tuple[str, ...] = ()


def public(status: int = 200, prepare: Prepare | None = None) -> Expect:
    return Expect(status, status, status, status, prepare)


def signed_in(status: int = 200, prepare: Prepare | None = None) -> Expect:
    return Expect(401, status, status, status, prepare)


def admin_only(status: int = 200, prepare: Prepare | None = None) -> Expect:
    return Expect(401, 403, 403, status, prepare)


def body(payload: Any) -> Prepare:
    async def prepare(world: World, role: str) -> Call:
        return Call({}, json=payload() if callable(payload) else payload)

    return prepare


# --- fresh targets for calls that change or delete what they act on --------------------------


async def artist_body(world: World, role: str) -> Call:
    return Call({}, json={"agency_id": world.ids["agency_id"], "name": unique_email("artist")})


async def concert_body(world: World, role: str) -> Call:
    body = {"title": "Matrix tour", "artist_id": world.ids["artist_id"]}
    return Call({}, json=body | {"venue_id": world.ids["venue_id"], **_starts()})


async def channel_body(world: World, role: str) -> Call:
    return Call({}, json={"artist_id": world.ids["artist_id"], "title": "Another"})


def _starts() -> dict[str, str]:
    return {"starts_at": (datetime.now(UTC) + timedelta(days=30)).isoformat()}


async def fresh_agency(world: World, role: str) -> Call:
    return Call({"agency_id": (await make_agency(world.client, world.admin))["id"]})


async def fresh_artist(world: World, role: str) -> Call:
    artist = await make_artist(world.client, world.admin, world.ids["agency_id"])
    return Call({"artist_id": artist["id"]})


async def fresh_venue(world: World, role: str) -> Call:
    return Call({"venue_id": (await make_venue(world.client, world.admin))["id"]})


async def fresh_concert(world: World, role: str) -> Call:
    concert = await make_concert(world.client, world.admin, artist_id=world.ids["artist_id"])
    return Call({"concert_id": concert["id"]})


async def generate_seats(world: World, role: str) -> Call:
    call = await fresh_concert(world, role)
    sections = [{"name": "A", "rows": 2, "seats_per_row": 5, "price": 10_000}]
    call.json = {"sections": sections}
    return call


async def fresh_booking(world: World, role: str) -> Call:
    return Call({"booking_id": (await world.hold())["id"]})


async def new_sale_body(world: World, role: str) -> Call:
    concert_id = (await make_sale(world.client, world.admin)).concert_id
    return Call({}, json={**_sale_window(), "concert_id": concert_id})


def _sale_window() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "opens_at": (now + timedelta(hours=1)).isoformat(),
        "closes_at": (now + timedelta(hours=2)).isoformat(),
    }


async def fresh_sale(world: World, role: str) -> Call:
    return Call({"sale_id": (await new_sale(world.client, world.admin, opens_in=1800))["id"]})


async def fresh_place(world: World, role: str) -> Call:
    """A sale where only A holds a place."""
    call = await fresh_sale(world, role)
    r = await world.client.post(f"/sales/{call.params['sale_id']}/queue", headers=world.auth["fan"])
    assert r.status_code == 201, r.text
    return call


async def event_stream(world: World, role: str) -> Call:
    return Call({}, accept="text/event-stream")


async def fresh_channel(world: World, role: str) -> Call:
    r = await world.client.post(
        "/channels",
        json={"artist_id": world.ids["artist_id"], "title": "Spare"},
        headers=world.admin,
    )
    assert r.status_code == 201, r.text
    return Call({"channel_id": r.json()["id"]})


async def live_channel(world: World, role: str) -> Call:
    """The world's channel, its session refreshed (it goes stale without nginx's updates)."""
    secret = world.state.settings.streaming_callback_secret.get_secret_value()
    r = await world.client.post(
        "/rtmp/on_update",
        params={"secret": secret},
        content=f"app=live&name={world.ids['stream_key']}&clientid=7&call=update_publish",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 204, r.text
    return Call({})


async def fresh_message(world: World, role: str) -> Call:
    return Call({"message_id": await world.chat_message()})


async def sanctioned(world: World, role: str) -> Call:
    room = await chat_service.get_room(world.state, name=world.ids["room"])
    await chat_service.sanction(
        world.state,
        room=room,
        user_id=world.users["other"],
        kind="mute",
        data=SanctionCreate(duration_s=600),
        by=world.users["admin"],
    )
    return Call({})


async def refresh_body(world: World, role: str) -> Call:
    return Call({}, json={"refresh_token": (await world.login(role))["refresh_token"]})


async def logout_call(world: World, role: str) -> Call:
    # A token pair of its own: logging out must not revoke the role's matrix token.
    pair = await world.login(role)
    headers = {} if role == "anonymous" else {"Authorization": f"Bearer {pair['access_token']}"}
    return Call({}, json={"refresh_token": pair["refresh_token"]}, headers=headers)


async def login_body(world: World, role: str) -> Call:
    return Call({}, json={"email": world.emails["fan"], "password": PASSWORD})


def rtmp(world_field: str = "stream_key") -> Prepare:
    async def prepare(world: World, role: str) -> Call:
        # A Bearer token is no substitute for the callback secret nginx-rtmp sends.
        return Call(
            {},
            content=f"app=live&name={world.ids[world_field]}&clientid=7&call=update_publish",
            headers={"Content-Type": "application/x-www-form-urlencoded"} | world.auth[role],
        )

    return prepare


async def signup_body(world: World, role: str) -> Call:
    email = unique_email("matrix")
    return Call({}, json={"email": email, "password": PASSWORD, "display_name": "M"})


RTMP_REFUSED = public(403, rtmp())

MATRIX: dict[tuple[str, str], Expect] = {
    # Documentation and operations
    ("GET", "/openapi.json"): public(),
    ("GET", "/docs"): public(),
    ("GET", "/docs/oauth2-redirect"): public(),
    ("GET", "/redoc"): public(),
    ("GET", "/healthz"): public(),
    # The web app's shell (its pages call the API like any client).
    ("GET", "/"): public(),
    ("GET", "/readyz"): public(),
    # Prometheus scrapes it; the chart keeps it off the public ingress (docs/security.md).
    ("GET", "/metrics"): public(),
    # Accounts: the credential is in the body, a Bearer token changes nothing.
    ("POST", "/auth/signup"): public(201, signup_body),
    ("POST", "/auth/login"): public(200, login_body),
    ("POST", "/auth/refresh"): public(200, refresh_body),
    ("POST", "/auth/logout"): public(204, logout_call),
    ("GET", "/users/me"): signed_in(),
    # Catalog: everyone reads, admins write.
    ("GET", "/agencies"): public(),
    ("POST", "/agencies"): admin_only(
        201, body(lambda: {"name": unique_email("ag"), "country": "KR"})
    ),
    ("GET", "/agencies/{agency_id}"): public(),
    ("PATCH", "/agencies/{agency_id}"): admin_only(200, body({"country": "JP"})),
    ("DELETE", "/agencies/{agency_id}"): admin_only(204, fresh_agency),
    ("GET", "/artists"): public(),
    ("POST", "/artists"): admin_only(201, artist_body),
    ("GET", "/artists/{artist_id}"): public(),
    ("PATCH", "/artists/{artist_id}"): admin_only(200, body({"kind": "group"})),
    ("DELETE", "/artists/{artist_id}"): admin_only(204, fresh_artist),
    ("GET", "/venues"): public(),
    ("POST", "/venues"): admin_only(
        201, body({"name": "Hall", "city": "Busan", "country": "KR", "capacity": 1000})
    ),
    ("GET", "/venues/{venue_id}"): public(),
    ("PATCH", "/venues/{venue_id}"): admin_only(200, body({"city": "Incheon"})),
    ("DELETE", "/venues/{venue_id}"): admin_only(204, fresh_venue),
    ("GET", "/concerts"): public(),
    ("POST", "/concerts"): admin_only(201, concert_body),
    ("GET", "/concerts/{concert_id}"): public(),
    ("PATCH", "/concerts/{concert_id}"): admin_only(200, body({"max_tickets_per_user": 20})),
    ("DELETE", "/concerts/{concert_id}"): admin_only(204, fresh_concert),
    ("POST", "/concerts/{concert_id}/seats:generate"): admin_only(201, generate_seats),
    ("GET", "/concerts/{concert_id}/seats"): public(),
    ("GET", "/concerts/{concert_id}/availability"): public(),
    ("PUT", "/concerts/{concert_id}/general-admission"): admin_only(
        200, body({"quantity": 100, "price": 99_000})
    ),
    ("GET", "/concerts/{concert_id}/general-admission"): public(),
    # Bookings: A's booking is A's (and an admin's to read and cancel); B sees a 404, as for
    # a booking that does not exist, so ids cannot be probed.
    ("POST", "/concerts/{concert_id}/bookings"): signed_in(201, body({"quantity": 1})),
    ("GET", "/bookings/{booking_id}"): Expect(401, 200, 404, 200),
    ("GET", "/bookings/requests/{request_id}"): Expect(401, 200, 404, 404),
    ("DELETE", "/bookings/{booking_id}"): Expect(401, 200, 404, 200, fresh_booking),
    # Paying is the owner's act only: an admin may cancel a hold but never pay for it.
    ("POST", "/bookings/{booking_id}/pay"): Expect(401, 200, 404, 404, fresh_booking),
    ("GET", "/users/me/bookings"): signed_in(),
    # Sales (organizers) and the waiting room (any signed-in user, their own place only).
    ("POST", "/sales"): admin_only(201, new_sale_body),
    ("GET", "/sales/{sale_id}"): public(),
    ("POST", "/sales/{sale_id}:open"): admin_only(200, fresh_sale),
    ("POST", "/sales/{sale_id}:close"): admin_only(200, fresh_sale),
    ("PUT", "/sales/{sale_id}/rate"): admin_only(200, body({"rate": 10, "mode": "manual"})),
    ("GET", "/sales/{sale_id}/stats"): admin_only(),
    # A rejoins (keeps the place: 200), B and the admin join (201).
    ("POST", "/sales/{sale_id}/queue"): Expect(401, 200, 201, 201),
    ("GET", "/sales/{sale_id}/queue/me"): Expect(401, 200, 404, 404),
    # Leaving is idempotent: B and the admin "leave" A's sale without touching A's place.
    ("DELETE", "/sales/{sale_id}/queue/me"): Expect(
        401, 204, 204, 204, fresh_place, noop=("other", "admin")
    ),
    ("GET", "/sales/{sale_id}/queue/me/events"): Expect(401, 200, 404, 404, event_stream),
    # Channels: everyone reads, admins manage, signed-in viewers send heartbeats.
    ("GET", "/channels"): public(),
    ("POST", "/channels"): admin_only(201, channel_body),
    ("GET", "/channels/{channel_id}"): public(),
    ("PATCH", "/channels/{channel_id}"): admin_only(200, body({"title": "Renamed"})),
    ("DELETE", "/channels/{channel_id}"): admin_only(204, fresh_channel),
    ("POST", "/channels/{channel_id}/stream-key:rotate"): admin_only(200, fresh_channel),
    ("POST", "/channels/{channel_id}/heartbeat"): signed_in(200, live_channel),
    # nginx-rtmp callbacks: only the shared secret opens them, whoever the caller is.
    ("POST", "/rtmp/on_publish"): RTMP_REFUSED,
    ("POST", "/rtmp/on_relay_publish"): RTMP_REFUSED,
    ("POST", "/rtmp/on_update"): RTMP_REFUSED,
    ("POST", "/rtmp/on_publish_done"): RTMP_REFUSED,
    # Chat over HTTP: signed-in users read, admins moderate.
    ("GET", "/rooms/{room}"): signed_in(),
    ("GET", "/rooms/{room}/messages"): signed_in(),
    ("PUT", "/rooms/{room}/settings"): admin_only(200, body({"slow_mode_s": 0})),
    ("DELETE", "/rooms/{room}/messages/{message_id}"): admin_only(204, fresh_message),
    ("PUT", "/rooms/{room}/{kind}/{user_id}"): admin_only(200, body({"duration_s": 60})),
    ("DELETE", "/rooms/{room}/{kind}/{user_id}"): admin_only(204, sanctioned),
}

# Not plain HTTP: authenticated in the STOMP CONNECT frame (tests/chat/test_protocol.py).
# The STOMP socket has its own auth tests (tests/chat); the web app's static files are public
# and read-only (tests/web checks them).
NOT_HTTP = {("WS", "/ws/stomp"), ("MOUNT", "/static")}


def app_routes(world: World) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    application = world.client._transport.app  # type: ignore[attr-defined]
    for context in iter_route_contexts(application.routes):
        route, path = context.route, str(context.path)
        if isinstance(route, WebSocketRoute):
            found.add(("WS", path))
        elif isinstance(route, Mount):
            found.add(("MOUNT", path))
        else:
            # HEAD is answered by the GET route: the GET entry covers it.
            found |= {(m, path) for m in (context.methods or ()) if m != "HEAD"}
    return found


async def test_every_route_is_in_the_matrix(world: World) -> None:
    routes = app_routes(world)
    listed = set(MATRIX) | NOT_HTTP
    assert not routes - listed, f"routes without a matrix entry: {sorted(routes - listed)}"
    assert not listed - routes, f"matrix entries for missing routes: {sorted(listed - routes)}"


@pytest.mark.parametrize(
    ("method", "path"), sorted(MATRIX), ids=[" ".join(k) for k in sorted(MATRIX)]
)
async def test_route_answers_each_role_as_the_matrix_says(
    world: World, method: str, path: str
) -> None:
    expect = MATRIX[(method, path)]
    failures: list[str] = []
    for role in ROLES:
        call = await expect.prepare(world, role) if expect.prepare else Call({})
        url = path.format(**(world.ids | call.params))
        headers = dict(world.auth[role] if call.headers is None else call.headers)
        if call.accept:
            headers["Accept"] = call.accept
        wanted = getattr(expect, role)
        # Only refusals and no-ops must leave everything as it was.
        checked = wanted >= 400 or role in expect.noop
        before = await world.snapshot() if checked else {}
        r = await world.client.request(
            method, url, json=call.json, content=call.content, params=call.query, headers=headers
        )
        if r.status_code != wanted:
            failures.append(f"{role}: {r.status_code} (want {wanted}) {r.text[:300]}")
            continue
        if r.status_code >= 400 and (
            r.headers.get("content-type") != PROBLEM
            or not r.json()["type"].startswith(PROBLEM_BASE)
        ):
            failures.append(f"{role}: {r.status_code} is not problem+json: {r.text[:200]}")
        if checked and (changed := changes(before, await world.snapshot())):
            failures.append(f"{role}: the answer {r.status_code} came with changes: {changed}")
    assert not failures, f"{method} {path}\n" + "\n".join(failures)


async def test_fans_see_only_their_own_bookings_and_account(world: World) -> None:
    mine = await world.client.get("/users/me/bookings", headers=world.auth["fan"])
    theirs = await world.client.get("/users/me/bookings", headers=world.auth["other"])
    assert world.ids["booking_id"] in {b["id"] for b in mine.json()["items"]}
    assert all(b["id"] != world.ids["booking_id"] for b in theirs.json()["items"])
    for role in ("fan", "other", "admin"):
        me = await world.client.get("/users/me", headers=world.auth[role])
        assert me.json()["id"] == world.users[role]


async def test_only_admins_see_channel_ingest_details(world: World) -> None:
    url = f"/channels/{world.ids['channel_id']}"
    for role in ("anonymous", "fan"):
        shown = (await world.client.get(url, headers=world.auth[role])).json()
        assert "ingest_url" not in shown and "stream_key_hint" not in shown, shown
    assert "ingest_url" in (await world.client.get(url, headers=world.admin)).json()


@pytest.mark.parametrize("strategy", ["atomic", "redis_claim"])
async def test_another_fans_idempotency_key_replays_nothing_of_theirs(
    world: World, strategy: str
) -> None:
    """Idempotency keys are per fan: B sending A's key and body gets a booking of B's own."""
    concert = world.ids["concert_id" if strategy == "atomic" else "pipeline_concert_id"]
    url = f"/concerts/{concert}/bookings"
    key = {"Idempotency-Key": f"shared-{uuid.uuid4().hex}"}
    body = {"quantity": 1, "strategy": strategy}
    first = await world.client.post(url, json=body, headers=world.auth["fan"] | key)
    second = await world.client.post(url, json=body, headers=world.auth["other"] | key)
    assert first.status_code == second.status_code
    assert first.status_code in (201, 202), first.text
    ident = "id" if strategy == "atomic" else "request_id"
    assert first.json()[ident] != second.json()[ident]
    if strategy == "atomic":
        seen = await world.client.get(f"/bookings/{second.json()['id']}", headers=world.auth["fan"])
        assert seen.status_code == 404
    else:
        seen = await world.client.get(
            f"/bookings/requests/{second.json()['request_id']}", headers=world.auth["fan"]
        )
        assert seen.status_code == 404
