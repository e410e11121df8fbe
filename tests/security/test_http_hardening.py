"""Security headers, the CORS allow-list, request size and field length limits, and the rate
limits on sign-up, refresh and booking, against the real app (PostgreSQL, Redis)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.main import create_app
from tests.booking.conftest import make_sale
from tests.conftest import PASSWORD, signup_and_login, unique_email

PROBLEM = "application/problem+json"
TYPE = "https://ticketrush.io/problems/"


@asynccontextmanager
async def custom_app(
    settings: Settings, client_ip: str = "127.0.0.1", **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings.model_copy(update=overrides))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=(client_ip, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


def _assert_hardened(r: httpx.Response) -> None:
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp


async def test_every_kind_of_answer_carries_the_security_headers(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    answers = [
        await client.get("/healthz"),
        await client.get("/concerts/999999999"),
        await client.post("/auth/login", json={"email": unique_email(), "password": "x"}),
        await client.post("/auth/login", content=b"{not json", headers={"Content-Type": "x"}),
        await client.options(
            "/concerts",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        ),
    ]
    assert [r.status_code for r in answers] == [200, 404, 401, 422, 403]
    for r in answers:
        _assert_hardened(r)
        assert "strict-transport-security" not in r.headers  # not behind HTTPS by default
    csp = answers[0].headers["content-security-policy"]
    # The web app plays HLS with hls.js (MediaSource blobs, playlists from the HLS origin).
    hls = re.match(r"https?://[^/]+", settings.streaming_hls_base_url)
    assert hls is not None
    assert f"media-src 'self' blob: {hls.group(0)};" in csp
    assert f"connect-src 'self' {hls.group(0)};" in csp


async def test_auth_answers_are_never_cached(client: httpx.AsyncClient) -> None:
    email = unique_email()
    signup = await client.post(
        "/auth/signup", json={"email": email, "password": PASSWORD, "display_name": "Fan"}
    )
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    bearer = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    me = await client.get("/users/me", headers=bearer)
    mine = await client.get("/users/me/bookings", headers=bearer)
    wrong = await client.post("/auth/login", json={"email": email, "password": "wrong one 123"})
    for r in (signup, login, refreshed, me, mine, wrong):
        assert r.headers["cache-control"] == "no-store", (r.request.url, r.headers)
    # Public catalog reads keep their own caching policy.
    public = await client.get("/concerts")
    assert public.headers["cache-control"].startswith("public")


async def test_hsts_behind_https_and_a_configured_csp(settings: Settings) -> None:
    async with custom_app(settings, behind_https=True, csp="default-src 'none'") as c:
        r = await c.get("/healthz")
        assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        assert r.headers["content-security-policy"] == "default-src 'none'"
        docs = await c.get("/docs")
        assert docs.status_code == 200
        # Swagger UI's bundle and inline bootstrap: only the docs pages allow them.
        assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    async with custom_app(settings, csp="") as c:
        assert "content-security-policy" not in (await c.get("/healthz")).headers


async def test_cors_allows_no_origin_by_default(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/concerts/1/bookings",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 403
    assert preflight.headers["content-type"] == PROBLEM
    assert preflight.json()["type"] == TYPE + "cors-rejected"
    assert "access-control-allow-origin" not in preflight.headers
    simple = await client.get("/concerts", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_allow_list(settings: Settings) -> None:
    fans = "https://fans.example"
    async with custom_app(settings, cors_allow_origins=[fans]) as c:
        ok = await c.options(
            "/concerts/1/bookings",
            headers={
                "Origin": fans,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, "
                "idempotency-key, x-admission-token",
            },
        )
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == fans
        assert "access-control-allow-credentials" not in ok.headers
        refused = [
            await c.options(
                "/concerts",
                headers={"Origin": origin, "Access-Control-Request-Method": method} | extra,
            )
            for origin, method, extra in [
                ("https://evil.example", "GET", {}),
                ("http://fans.example", "GET", {}),  # another scheme is another origin
                (fans, "GET", {"Access-Control-Request-Headers": "x-evil"}),
                (fans, "CONNECT", {}),
            ]
        ]
        assert [r.status_code for r in refused] == [403] * 4
        assert all(r.json()["type"] == TYPE + "cors-rejected" for r in refused)
        read = await c.get("/concerts", headers={"Origin": fans})
        assert read.headers["access-control-allow-origin"] == fans
        assert "x-request-id" in read.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize("origin", ["*", "https://*.example", "https://fans.example/", "fans"])
def test_cors_allow_list_takes_exact_origins_only(origin: str) -> None:
    with pytest.raises(ValidationError):
        Settings(cors_allow_origins=[origin])


async def test_request_body_size_limit(settings: Settings) -> None:
    async with custom_app(settings, max_body_bytes=2048) as c:
        big = {"email": unique_email(), "password": "x" * 4000}
        r = await c.post("/auth/login", json=big)
        assert r.status_code == 413
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["type"] == TYPE + "payload-too-large"
        _assert_hardened(r)

        async def chunks(total: int) -> AsyncIterator[bytes]:
            body = b'{"email": "%s", "password": "%s"}' % (
                unique_email().encode(),
                b"y" * (total - 60),
            )
            for i in range(0, len(body), 512):
                yield body[i : i + 512]

        # Without Content-Length (chunked): counted as it arrives.
        json_type = {"Content-Type": "application/json"}
        chunked = await c.post("/auth/login", content=chunks(5000), headers=json_type)
        assert chunked.status_code == 413
        assert chunked.json()["type"] == TYPE + "payload-too-large"
        # A small chunked body reaches the route intact.
        small = await c.post("/auth/login", content=chunks(200), headers=json_type)
        assert small.status_code == 401, small.text


async def test_field_length_limits(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    def signup(**over: Any) -> dict[str, Any]:
        return {"email": unique_email(), "password": PASSWORD, "display_name": "Fan"} | over

    cases = [
        ("/auth/signup", signup(display_name="x" * 61), "display_name"),
        ("/auth/signup", signup(password="p" * 257), "password"),
        ("/auth/signup", signup(email="a" * 250 + "@example.com"), "email"),
        ("/auth/refresh", {"refresh_token": "r" * 201}, "refresh_token"),
    ]
    for url, body, field in cases:
        r = await client.post(url, json=body)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["type"] == TYPE + "validation-error"
        assert field in {e["field"] for e in r.json()["errors"]}
    fan = await signup_and_login(client)
    headers = {"Authorization": f"Bearer {fan['access_token']}"}
    too_long = [
        {"X-Admission-Token": "t" * 5000},
        {"Idempotency-Key": "k" * 101},
    ]
    # A concert without a waiting room: a sale's admission gate would answer 401 first.
    url = f"/concerts/{(await make_sale(client, admin_headers)).concert_id}/bookings"
    for extra in too_long:
        r = await client.post(url, json={"quantity": 1}, headers=headers | extra)
        assert r.status_code == 422, (extra.keys(), r.text)
    r = await client.post(url, json={"seat_ids": list(range(1, 12))}, headers=headers)
    assert r.status_code == 422, r.text
    assert {e["field"] for e in r.json()["errors"]} == {"seat_ids"}


def _unbounded(schema: dict[str, Any], components: dict[str, Any], where: str) -> list[str]:
    """Strings without a length bound, arrays without maxItems, free-form objects."""
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    found: list[str] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            found += _unbounded(sub, components, where)
    kind = schema.get("type")
    if kind == "string":
        pattern = schema.get("pattern", "")
        # An anchored pattern with only bounded repeats bounds the length too.
        bounded_pattern = (
            pattern.startswith("^")
            and pattern.endswith("$")
            and not re.search(r"(?<!\\)[*+]|\{\d+,\}", pattern)
        )
        if not (
            {"maxLength", "enum", "const"} & schema.keys()
            or schema.get("format") in {"date-time", "uuid", "email"}
            or bounded_pattern
        ):
            found.append(where)
    if kind == "array":
        if "maxItems" not in schema:
            found.append(where + "[]")
        found += _unbounded(schema.get("items", {}), components, where + "[]")
    for name, sub in schema.get("properties", {}).items():
        found += _unbounded(sub, components, f"{where}.{name}")
    if schema.get("additionalProperties") not in (None, False):
        found.append(where + "{*}")
    return found


def test_every_documented_input_is_bounded(settings: Settings) -> None:
    spec = create_app(settings).openapi()
    components = spec["components"]["schemas"]
    unbounded: list[str] = []
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", []):
                where = f"{method.upper()} {path} {param['in']}:{param['name']}"
                unbounded += _unbounded(param["schema"], components, where)
            for content_type, content in op.get("requestBody", {}).get("content", {}).items():
                where = f"{method.upper()} {path} body[{content_type}]"
                unbounded += _unbounded(content["schema"], components, where)
    assert not unbounded, unbounded


async def _burst(send: Any, n: int) -> list[httpx.Response]:
    return [await send() for _ in range(n)]


async def test_signup_and_refresh_are_rate_limited_per_ip(settings: Settings) -> None:
    async with custom_app(
        settings, client_ip="10.20.30.40", signup_limit_per_ip=2, refresh_limit_per_ip=2
    ) as c:
        signups = await _burst(
            lambda: c.post(
                "/auth/signup",
                json={"email": unique_email(), "password": PASSWORD, "display_name": "F"},
            ),
            3,
        )
        assert [r.status_code for r in signups] == [201, 201, 429]
        assert signups[2].json()["type"] == TYPE + "rate-limited"
        assert 1 <= int(signups[2].headers["retry-after"]) <= 3600
        email = signups[0].json()["email"]
        login = await c.post("/auth/login", json={"email": email, "password": PASSWORD})
        token = login.json()["refresh_token"]
        refreshes = await _burst(lambda: c.post("/auth/refresh", json={"refresh_token": token}), 3)
        # The first rotates; the second is a reuse (401); the third is not even looked at.
        assert [r.status_code for r in refreshes] == [200, 401, 429]
    # Another IP has its own budget.
    async with custom_app(settings, client_ip="10.20.30.41", signup_limit_per_ip=2) as c:
        r = await c.post(
            "/auth/signup",
            json={"email": unique_email(), "password": PASSWORD, "display_name": "F"},
        )
        assert r.status_code == 201


async def test_holds_are_rate_limited_per_fan_and_optionally_per_ip(
    settings: Settings, admin_headers: dict[str, str]
) -> None:
    async with custom_app(
        settings,
        client_ip="10.99.0.1",
        booking_limit_per_account=3,
        booking_limit_per_ip=6,
        booking_limit_window_s=60,
    ) as c:
        sale = await make_sale(c, admin_headers, max_per_user=20)
        url = f"/concerts/{sale.concert_id}/bookings"
        a = {"Authorization": f"Bearer {(await signup_and_login(c))['access_token']}"}
        b = {"Authorization": f"Bearer {(await signup_and_login(c))['access_token']}"}
        first = [(await c.post(url, json={"quantity": 1}, headers=a)).status_code for _ in range(4)]
        assert first == [201, 201, 201, 429]
        # B has a budget of its own, until the IP's 6 attempts are spent (4 of A, 2 of B).
        second = [
            (await c.post(url, json={"quantity": 1}, headers=b)).status_code for _ in range(3)
        ]
        assert second == [201, 201, 429]
        limited = await c.post(url, json={"quantity": 1}, headers=b)
        assert limited.json()["type"] == TYPE + "rate-limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
