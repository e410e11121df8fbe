"""Conditional GET helpers: strong ETags and 304 answers."""

from __future__ import annotations

from fastapi import Request, Response
from pydantic import BaseModel

from app.core.cache import make_etag

JSON = "application/json"


def etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return etag in candidates


def body_response(
    request: Request, body: bytes, etag: str | None = None, *, max_age: int = 0
) -> Response:
    etag = etag or make_etag(body)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}, must-revalidate"}
    if etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type=JSON, headers=headers)


def model_response(request: Request, model: BaseModel) -> Response:
    return body_response(request, model.model_dump_json().encode())
