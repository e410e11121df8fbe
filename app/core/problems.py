"""RFC 9457 problem details: one exception hierarchy, one set of handlers."""

from __future__ import annotations

from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import exceptions as redis_exc
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_BASE = "https://ticketrush.io/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

log = structlog.get_logger(__name__)


class ProblemError(Exception):
    """A domain error that maps to one stable problem `type`."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = headers or {}
        self.extra = extra

    @classmethod
    def type_uri(cls) -> str:
        return PROBLEM_BASE + cls.slug


class NotFound(ProblemError):
    status = 404
    slug = "not-found"
    title = "Resource not found"


class Conflict(ProblemError):
    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class Unauthorized(ProblemError):
    status = 401
    slug = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **extra)


class Forbidden(ProblemError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class RateLimited(ProblemError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(
            detail or f"Too many requests; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )


class ServiceUnavailable(ProblemError):
    status = 503
    slug = "service-unavailable"
    title = "A dependency is unavailable"


def problem_response(
    *,
    status: int,
    type_uri: str,
    title: str,
    detail: str | None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_uri, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Resource not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            status=exc.status,
            type_uri=exc.type_uri(),
            title=exc.title,
            detail=exc.detail,
            instance=request.url.path,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "field": ".".join(str(p) for p in err.get("loc", ())[1:]) or None,
                "message": err.get("msg", ""),
                "code": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        return problem_response(
            status=422,
            type_uri=PROBLEM_BASE + "validation-error",
            title="Request validation failed",
            detail=f"{len(errors)} invalid field(s)",
            instance=request.url.path,
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, title = _HTTP_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(
            status=exc.status_code,
            type_uri=PROBLEM_BASE + slug,
            title=title,
            detail=detail,
            instance=request.url.path,
            headers=dict(exc.headers or {}),
        )

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("dependency_unavailable", path=request.url.path, error=type(exc).__name__)
        return problem_response(
            status=503,
            type_uri=ServiceUnavailable.type_uri(),
            title=ServiceUnavailable.title,
            detail="A backing service is unavailable or too slow; retry shortly.",
            instance=request.url.path,
            headers={"Retry-After": "2"},
        )

    # Connection loss, pool exhaustion and statement timeouts are the platform's problem, not the
    # client's: a 503 with Retry-After tells well-behaved clients to back off.
    for exc_type in (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        redis_exc.ConnectionError,
        redis_exc.TimeoutError,
        ConnectionError,
        TimeoutError,
    ):
        app.add_exception_handler(exc_type, _unavailable)

    @app.exception_handler(sa_exc.DBAPIError)
    async def _database(request: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        # asyncpg reports overload ("too many clients", 53300), lost connections (08xxx) and
        # cancelled statements (57014, statement_timeout) as plain DBAPIErrors.
        cause = getattr(exc.orig, "__cause__", None) or exc.orig
        sqlstate = str(getattr(cause, "sqlstate", "") or "")
        # A connection found dead (see app/core/db.py) is an outage too, whatever its class.
        if exc.connection_invalidated or sqlstate[:2] in {"08", "53", "57"}:
            return await _unavailable(request, exc)
        return await _unhandled(request, exc)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Logged with the traceback for operators; the client only sees a stable problem.
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(
            status=500,
            type_uri=PROBLEM_BASE + "internal-error",
            title="Internal server error",
            detail="The request failed; it has been logged.",
            instance=request.url.path,
        )
