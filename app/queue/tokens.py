"""Admission tokens: short-lived JWTs bound to one fan and one sale, signed with the app secret.

Claims: `aud` = `sale:<id>`, `sub` = user id, `cid` = concert id, `pos` = place in line, `jti`,
`iat`, `exp`, `iss`, `typ` = "admission". The audience differs from access tokens', so neither
kind is accepted where the other is expected. A valid signature is not enough at the booking
gate: the fan must also still be in the sale's admitted set (revocation, see `store.verify`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from app.core.config import Settings

TOKEN_TYPE = "admission"  # noqa: S105 - a claim value, not a secret
AUDIENCE_PREFIX = "sale:"


@dataclass(frozen=True, slots=True)
class AdmissionClaims:
    sale_id: int
    concert_id: int
    user_id: int
    position: int
    jti: str
    expires_at: datetime


def new_jti() -> str:
    return uuid.uuid4().hex


def issue_admission_token(
    settings: Settings,
    *,
    sale_id: int,
    concert_id: int,
    user_id: int,
    position: int,
    expires_at: datetime,
    issued_at: datetime,
    jti: str,
) -> str:
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "aud": f"{AUDIENCE_PREFIX}{sale_id}",
        "cid": concert_id,
        "pos": position,
        "jti": jti,
        "iat": issued_at,
        "exp": expires_at,
        "iss": settings.jwt_issuer,
        "typ": TOKEN_TYPE,
    }
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), settings.jwt_algorithm)


def decode_admission_token(settings: Settings, token: str) -> AdmissionClaims:
    """Check signature, algorithm, expiry, issuer and shape; raise jwt.InvalidTokenError.

    The audience is checked here for shape only; which sale it must be is the caller's check
    (a token of another sale is a 403, not a 401)."""
    payload = jwt.decode(
        token,
        settings.jwt_secret.get_secret_value(),
        algorithms=[settings.jwt_algorithm],
        issuer=settings.jwt_issuer,
        options={
            "require": ["exp", "iat", "jti", "sub", "aud", "iss"],
            "verify_aud": False,
        },
    )
    aud = payload.get("aud")
    if (
        payload.get("typ") != TOKEN_TYPE
        or not isinstance(aud, str)
        or not aud.startswith(AUDIENCE_PREFIX)
    ):
        raise jwt.InvalidTokenError("not an admission token")
    try:
        return AdmissionClaims(
            sale_id=int(aud.removeprefix(AUDIENCE_PREFIX)),
            concert_id=int(payload["cid"]),
            user_id=int(payload["sub"]),
            position=int(payload.get("pos", 0)),
            jti=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise jwt.InvalidTokenError("malformed admission claims") from exc
