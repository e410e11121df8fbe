"""The web app's shell and static files as the API serves them, its CSP-friendliness, and a
plain-language message for every problem a fan or organizer can get."""

from __future__ import annotations

import importlib
import re
from html.parser import HTMLParser

import httpx

from app.core.problems import ProblemError
from app.web.router import STATIC_DIR

MODULES = [p.relative_to(STATIC_DIR).as_posix() for p in sorted(STATIC_DIR.rglob("*.js"))]


async def test_index_is_the_app_shell(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-cache"
    assert '<script type="module" src="/static/js/app.js">' in r.text


async def test_static_files_are_served_with_validators(client: httpx.AsyncClient) -> None:
    r = await client.get("/static/js/app.js")
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
    again = await client.get("/static/js/app.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    missing = await client.get("/static/js/nope.js")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    escape = await client.get("/static/../router.py")
    assert escape.status_code == 404


async def test_web_routes_stay_out_of_the_api_contract(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths and not [p for p in paths if p.startswith("/static")]


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style" or "style" in names or any(n.startswith("on") for n in names):
            self.found.append(f"inline style/handler on <{tag}>")
        for name, value in attrs:
            if name in ("src", "href") and value and re.match(r"^(https?:)?//", value):
                self.found.append(f"off-origin {name}={value}")


def test_pages_need_nothing_a_strict_csp_forbids() -> None:
    """script-src 'self' / style-src 'self': no inline code, styles or handlers, no CDN."""
    parser = _Inline()
    parser.feed((STATIC_DIR / "index.html").read_text())
    assert parser.found == []
    for module in MODULES:
        source = (STATIC_DIR / module).read_text()
        assert "innerHTML" not in source, module  # text nodes only: no markup injection
        assert not re.search(r"\beval\(|new Function\(", source), module
        assert not re.search(r"""["'`]https?://""", source), module
        assert "style:" not in source.replace('style: "currency"', ""), module


def _slugs(module: str) -> set[str]:
    found = set()
    for value in vars(importlib.import_module(module)).values():
        own = isinstance(value, type) and value.__module__ == module and "slug" in vars(value)
        if own and issubclass(value, ProblemError):
            found.add(value.slug)
    return found


def test_every_fan_facing_problem_has_a_clear_message() -> None:
    source = (STATIC_DIR / "js" / "messages.js").read_text()
    known = set(re.findall(r'^\s+"([a-z-]+)":', source, re.MULTILINE))
    wanted = set().union(
        *(
            _slugs(m)
            for m in (
                "app.booking.errors",
                "app.queue.errors",
                "app.payments.errors",
                "app.booking.strategies.redis_claim",
            )
        )
    ) | {"rate-limited", "chat-rate-limited", "chat-slow-mode", "invalid-credentials"}
    # Problems no page can trigger (admin or API-shape errors with their own detail text).
    wanted -= {
        "idempotency-key-reused",
        "invalid-seats",
        "no-general-admission",
        "not-acceptable",
        "not-your-booking",
        "payment-not-found",
        "booking-request-not-found",
        "booking-not-found",
    }
    assert wanted - known == set()
