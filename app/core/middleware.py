"""Pure-ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): request id, RED
metrics per route template, access log; body size limit, security headers, CORS."""

from __future__ import annotations

import re
import time
import uuid
from urllib.parse import urlsplit

import structlog
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.metrics import HTTP_LATENCY, HTTP_REQUESTS
from app.core.problems import PROBLEM_BASE, problem_response

log = structlog.get_logger("ticket_rush.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _route_template(scope: Scope) -> str:
    # Label by template (/concerts/{concert_id}), never by raw path: bounded cardinality.
    # The router stores the matched route in the (shared) scope.
    return str(getattr(scope.get("route"), "path", "unmatched"))


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(route, method, str(status_code)).inc()
            HTTP_LATENCY.labels(route, method).observe(elapsed)
            if status_code >= 500:
                log.warning(
                    "request",
                    method=method,
                    route=route,
                    status=status_code,
                    ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id")


class BodySizeLimitMiddleware:
    """413 problem+json for a request body above `max_bytes`, before any route reads it: at
    once from Content-Length, else by counting a chunked body (buffered up to the limit)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # A refused body up to this size is read and dropped before answering: a server that
        # closes on unread data resets the connection, and the client may never see the 413.
        self.drain_bytes = 4 * max_bytes + 65_536

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if length is not None:
            # The server already refused a malformed Content-Length; the ASGI test client not.
            if not length.isdigit() or int(length) > self.max_bytes:
                drain = length.isdigit() and int(length) <= self.drain_bytes
                await self._reject(scope, receive, send, drained=0 if drain else None)
                return
            await self.app(scope, receive, send)
            return
        if not chunked:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the route sees an empty body and the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                more = message.get("more_body", False)
                await self._reject(scope, receive, send, drained=size if more else None)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(
        self, scope: Scope, receive: Receive, send: Send, *, drained: int | None
    ) -> None:
        """Answer 413; first read the rest of the body if `drained` (bytes read so far) is set."""
        while drained is not None and drained <= self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response = problem_response(
            status=413,
            type_uri=PROBLEM_BASE + "payload-too-large",
            title="Request body too large",
            detail=f"Request bodies are limited to {self.max_bytes} bytes.",
            instance=scope["path"],
        )
        await response(scope, receive, send)


# Swagger UI and ReDoc (FastAPI's /docs, /redoc) load their bundles from jsDelivr with an
# inline bootstrap script; only these pages get this looser policy.
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def default_csp(hls_base_url: str) -> str:
    """The policy for the API and the web app it serves: scripts, styles and modules from this
    origin only (no inline code), media as `blob:` (hls.js feeds MediaSource) and the HLS
    origin for playlists and segments, no framing, no plugins."""
    parts = urlsplit(hls_base_url)
    hls = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob:{hls}; connect-src 'self'{hls}; worker-src 'self' blob:; "
        "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


class SecurityHeadersMiddleware:
    """Headers every response carries (unless the route set them): nosniff, no framing, no
    referrer, the CSP, HSTS when served over HTTPS, and `Cache-Control: no-store` on auth
    answers and on anything sent to a request that carried credentials."""

    def __init__(self, app: ASGIApp, *, csp: str, hsts_max_age_s: int | None) -> None:
        self.app = app
        static = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if hsts_max_age_s:
            hsts = f"max-age={hsts_max_age_s}; includeSubDomains".encode()
            static.append((b"strict-transport-security", hsts))
        # Raw (lower-case) header pairs, precomputed: this runs on every queue poll.
        self.headers = static + ([(b"content-security-policy", csp.encode())] if csp else [])
        self.docs_headers = [*static, (b"content-security-policy", DOCS_CSP.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = self.docs_headers if path in DOCS_PATHS else self.headers
        if path.startswith(("/auth/", "/users/me")) or any(
            name == b"authorization" for name, _ in scope["headers"]
        ):
            extra = [*extra, (b"cache-control", b"no-store")]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw: list[tuple[bytes, bytes]] = message.setdefault("headers", [])
                present = {name.lower() for name, _ in raw}
                raw.extend(pair for pair in extra if pair[0] not in present)
            await send(message)

        await self.app(scope, receive, send_wrapper)


class StrictCORSMiddleware(CORSMiddleware):
    """Starlette's CORS handling with an explicit origin allow-list (none by default); a
    refused preflight is a 403 problem+json instead of Starlette's plain-text 400."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # With no origin allowed, an answer never depends on Origin: skip Starlette's header
        # parsing for requests without one (every queue poll from a same-origin page or app).
        if (
            not self.allow_origins
            and scope["type"] == "http"
            and all(name != b"origin" for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        return problem_response(
            status=403,
            type_uri=PROBLEM_BASE + "cors-rejected",
            title="Cross-origin request not allowed",
            detail=bytes(response.body).decode(),
            headers={"Vary": response.headers["vary"]},
        )
