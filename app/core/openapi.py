"""OpenAPI documentation of problem+json error responses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


_DESCRIPTIONS = {
    304: "Not modified (ETag matched)",
    400: "Bad request",
    401: "Missing, invalid or revoked token",
    403: "Not allowed for this role",
    404: "Not found",
    409: "Conflict with the current state",
    412: "Precondition failed",
    422: "Validation failed",
    429: "Rate limited; see Retry-After",
    503: "Dependency unavailable",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        if code == 304:
            out[code] = {"description": _DESCRIPTIONS[code]}
            continue
        out[code] = {
            "description": _DESCRIPTIONS.get(code, "Error"),
            "content": {"application/problem+json": {"schema": Problem.model_json_schema()}},
        }
    return out
