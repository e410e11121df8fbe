"""End-to-end fixtures: the whole stack as real processes (API, admission worker, booking
consumer, payment simulator, Tansu broker, nginx-rtmp) and headless Debian Chromium driven by
Playwright (no browser download: `executable_path=/usr/bin/chromium`)."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from app.core.config import Settings
from app.devstack.broker import free_port, spawn, stop_process
from app.streaming.ingest import DEBIAN_RTMP_MODULE, Ingest, IngestConfig, start_ingest
from app.web.router import STATIC_DIR
from tests.conftest import PASSWORD, ROOT, LiveServer, start_api, unique_email
from tests.fixtures.booking_consumer import ConsumerProcess
from tests.queue.conftest import WORKER_ENV, process_env

# Assertions wait like the pages do on a loaded 2-core machine (playwright's default is 5 s).
expect.set_options(timeout=20_000)

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "reports" / "e2e"
# As the machine's probe found: without the background-networking flags Chromium keeps
# dialling hosts this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
VIEWPORT: ViewportSize = {"width": 1100, "height": 760}

missing = [
    what
    for what, ok in [
        ("Debian chromium (apt-get install chromium)", CHROMIUM.exists()),
        ("make web-vendor", (STATIC_DIR / "vendor" / "stomp.umd.min.js").exists()),
        ("ffmpeg", shutil.which("ffmpeg") is not None),
        ("nginx with the RTMP module", DEBIAN_RTMP_MODULE.exists()),
    ]
    if not ok
]
if missing and os.environ.get("CI"):
    raise RuntimeError(f"e2e prerequisites missing in CI: {', '.join(missing)}")
pytestmark = pytest.mark.skipif(bool(missing), reason=f"missing: {', '.join(missing)}")


@dataclass(frozen=True)
class Stack:
    api: LiveServer
    ingest: Ingest
    settings: Settings

    @property
    def url(self) -> str:
        return self.api.url


@pytest.fixture(scope="session")
def e2e_stack(
    settings: Settings,
    booking_consumer: ConsumerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """One API process with a short hold, the admission worker on fast clocks, and nginx-rtmp
    calling back into the API (the session's consumer, payment simulator and broker)."""
    run = tmp_path_factory.mktemp("e2e")
    port, rtmp_port, http_port = free_port(), free_port(), free_port()
    secret = secrets.token_urlsafe(24)
    streaming = {
        "TR_STREAMING_CALLBACK_SECRET": secret,
        "TR_STREAMING_HLS_BASE_URL": f"http://127.0.0.1:{http_port}/hls",
        "TR_STREAMING_INGEST_URL": f"rtmp://127.0.0.1:{rtmp_port}/live",
        "TR_STREAMING_UPDATE_INTERVAL_S": "1",
    }
    env = process_env(
        settings,
        **streaming,
        TR_API_PORT=str(port),
        TR_API_WORKERS="1",
        TR_LOG_LEVEL="WARNING",
        TR_HOLD_TTL_S="180",
        TR_ADMISSION_TOKEN_TTL_S="300",
        PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix="tr-test-e2e-metrics-"),
    )
    api = start_api(env, run / "api.log", f"http://127.0.0.1:{port}")
    worker = spawn(
        [sys.executable, "-m", "app.admission"],
        run / "admission.log",
        env=process_env(settings, **WORKER_ENV),
        cwd=ROOT,
    )
    ingest = start_ingest(
        IngestConfig(
            run_dir=run / "nginx",
            hls_dir=run / "nginx" / "hls",
            rtmp_port=rtmp_port,
            http_port=http_port,
            callback_url=f"{api.url}/rtmp",
            callback_secret=secret,
            update_interval_s=1,
            hls_fragment_s=1,
            hls_playlist_length_s=4,
        )
    )
    try:
        yield Stack(api, ingest, settings)
    finally:
        ingest.stop()
        stop_process(worker.pid)
        stop_process(api.proc.pid)


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    tokens: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    @property
    def user_id(self) -> int:
        import jwt

        return int(
            jwt.decode(self.tokens["access_token"], options={"verify_signature": False})["sub"]
        )


@pytest.fixture(scope="session")
async def admin(app: Any, e2e_stack: Stack) -> Account:
    """An organizer (admin) account that can also log in through the browser."""
    from app.auth.models import Role
    from app.auth.service import create_user

    email = unique_email("organizer")
    async with app.state.tr.sessionmaker() as session:
        await create_user(
            session, email=email, password=PASSWORD, display_name="Organizer", role=Role.admin
        )
    return await login(e2e_stack, email)


async def login(stack: Stack, email: str) -> Account:
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        r = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return Account(email, PASSWORD, r.json())


async def new_fan(stack: Stack, name: str = "Fan") -> Account:
    email = unique_email(name.lower())
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        r = await client.post(
            "/auth/signup", json={"email": email, "password": PASSWORD, "display_name": name}
        )
    assert r.status_code == 201, r.text
    return await login(stack, email)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


class Fans:
    """Browser contexts (one per fan: own storage, own cookies), closed after the test."""

    def __init__(self, browser: Browser, stack: Stack) -> None:
        self.browser = browser
        self.stack = stack
        self.contexts: list[BrowserContext] = []
        self.console: list[str] = []

    async def page(self, account: Account | None = None) -> Page:
        context = await self.browser.new_context(
            viewport=VIEWPORT, base_url=self.stack.url, locale="en-GB", timezone_id="UTC"
        )
        context.set_default_timeout(30_000)
        self.contexts.append(context)
        if account is not None:
            # A fan who logged in earlier: the app keeps its tokens in localStorage.
            session = account.tokens | {"email": account.email}
            await context.add_init_script(
                "if (!localStorage.getItem('tr.auth')) localStorage.setItem('tr.auth', "
                f"JSON.stringify({_js(session)}));"
            )
        page = await context.new_page()
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        page.on(
            "console",
            lambda msg: (
                self.console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None
            ),
        )
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


def _js(value: Any) -> str:
    import json

    return json.dumps(value)


@pytest.fixture
async def fans(browser: Browser, e2e_stack: Stack) -> AsyncIterator[Fans]:
    group = Fans(browser, e2e_stack)
    yield group
    await group.close()


async def shot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """A screenshot under reports/e2e/, reduced to a 128-colour palette (small in git)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    raw = Path(tempfile.mkstemp(suffix=".png")[1])
    try:
        await page.screenshot(path=str(raw), full_page=full_page)
        target = SHOTS / f"{name}.png"
        with Image.open(raw) as image:
            image.convert("RGB").quantize(colors=128).save(target, optimize=True)
        return target
    finally:
        raw.unlink(missing_ok=True)


def tag() -> str:
    return uuid.uuid4().hex[:4]
