"""The waiting room's two hot calls served ahead of FastAPI's router.

`POST /sales/{id}/queue` and `GET /sales/{id}/queue/me` are most of a rush's requests, and
their own work is one Redis script call: the bench-spike profile put most of a worker's time
in the framework around them (matching the path against every included router, solving
dependencies, the exit stacks, the exception middleware). This middleware sits inside the
app's own middleware (request ids, metrics, security headers, CORS all still apply) and
answers those two calls with the same functions as the FastAPI routes, which stay the documented
contract and answer whatever this does not take (a malformed id, HEAD, other methods).
"""

from __future__ import annotations

import inspect
import re
from types import SimpleNamespace

from fastapi import FastAPI
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.deps import user_of_token
from app.core.state import AppState
from app.core.types import MAX_ID
from app.queue import service
from app.queue.schemas import QueueStatus

_PATH = re.compile(r"/sales/([1-9][0-9]{0,18})/queue(/me)?")
_NO_STORE = (b"cache-control", b"no-store")
# What the request-metrics middleware labels these answers with (it reads scope["route"]).
_JOIN_ROUTE = SimpleNamespace(path="/sales/{sale_id}/queue")
_STATUS_ROUTE = SimpleNamespace(path="/sales/{sale_id}/queue/me")


class QueueEdgeMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None or (scope["method"], bool(match[2])) not in (
            ("POST", False),
            ("GET", True),
        ):
            await self.app(scope, receive, send)
            return
        sale_id = int(match[1])
        if sale_id > MAX_ID:
            await self.app(scope, receive, send)
            return
        join = not match[2]
        scope["route"] = _JOIN_ROUTE if join else _STATUS_ROUTE
        application: FastAPI = scope["app"]
        state: AppState = application.state.tr
        try:
            response = await _answer(state, scope, sale_id, join=join)
        except Exception as exc:
            response = await _problem(application, Request(scope, receive), exc)
        await response(scope, receive, send)


async def _problem(application: FastAPI, request: Request, exc: Exception) -> Response:
    """The app's own exception handler's answer (problem+json), as if a route had raised."""
    for cls in type(exc).__mro__:
        handler = application.exception_handlers.get(cls)
        if handler is not None:
            answer = handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
    raise exc


def _bearer_token(scope: Scope) -> str | None:
    # What HTTPBearer(auto_error=False) takes from the header: only a Bearer token.
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, token = get_authorization_scheme_param(value.decode("latin-1"))
            return token if scheme.lower() == "bearer" and token else None
    return None


def _ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _json(answer: QueueStatus, status_code: int = 200) -> Response:
    response = Response(answer.model_dump_json(), status_code, media_type="application/json")
    response.raw_headers.append(_NO_STORE)
    return response


async def join_response(state: AppState, *, sale_id: int, user_id: int, ip: str) -> Response:
    """The answer to `POST /sales/{id}/queue`, here and from the documented route."""
    answer, new = await service.join(state, sale_id=sale_id, user_id=user_id, ip=ip)
    response = _json(answer, 201 if new else 200)
    response.raw_headers.append((b"location", f"/sales/{sale_id}/queue/me".encode()))
    return response


async def status_response(state: AppState, *, sale_id: int, user_id: int, ip: str) -> Response:
    """The answer to `GET /sales/{id}/queue/me`, here and from the documented route."""
    return _json(await service.status(state, sale_id=sale_id, user_id=user_id, ip=ip))


async def _answer(state: AppState, scope: Scope, sale_id: int, *, join: bool) -> Response:
    claims = await user_of_token(state, _bearer_token(scope))
    respond = join_response if join else status_response
    return await respond(state, sale_id=sale_id, user_id=claims.user_id, ip=_ip(scope))
