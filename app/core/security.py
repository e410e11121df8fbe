"""Password hashing (Argon2 via pwdlib) and access-token JWTs (PyJWT)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cachetools import LRUCache
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from app.core.config import Settings

_hasher = PasswordHash((Argon2Hasher(),))
# Verified when an email is unknown so that a miss costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-real-password-used-for-timing-only")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _hasher.verify(password, _DUMMY_HASH)
        return False
    return _hasher.verify(password, password_hash)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    role: str
    jti: str
    expires_at: datetime


def issue_access_token(settings: Settings, *, user_id: int, role: str) -> tuple[str, AccessClaims]:
    now = datetime.now(UTC)
    claims = AccessClaims(
        user_id=user_id,
        role=role,
        jti=uuid.uuid4().hex,
        expires_at=now + timedelta(seconds=settings.access_token_ttl_s),
    )
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "role": role,
        "jti": claims.jti,
        "iat": now,
        "exp": claims.expires_at,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "typ": "access",
    }
    token = jwt.encode(payload, settings.jwt_secret.get_secret_value(), settings.jwt_algorithm)
    return token, claims


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Validate signature, algorithm, expiry, audience and issuer; raise jwt.InvalidTokenError."""
    payload = jwt.decode(
        token,
        settings.jwt_secret.get_secret_value(),
        algorithms=[settings.jwt_algorithm],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        options={"require": ["exp", "iat", "jti", "sub", "aud", "iss"]},
    )
    if payload.get("typ") != "access" or payload.get("role") not in {"fan", "admin"}:
        raise jwt.InvalidTokenError("not an access token")
    return AccessClaims(
        user_id=int(payload["sub"]),
        role=str(payload["role"]),
        jti=str(payload["jti"]),
        expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
    )


class AccessTokenVerifier:
    """`decode_access_token` that remembers the tokens it verified, keyed by the whole token
    string: a fan polling the queue sends the same token every few seconds, and checking its
    signature again is a large share of such a request. A changed token is a different key,
    so it is verified in full; expiry is checked on every use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        size = settings.auth_token_cache_size
        self._verified: LRUCache[str, AccessClaims] | None = LRUCache(size) if size else None

    def verify(self, token: str) -> AccessClaims:
        if self._verified is None:
            return decode_access_token(self.settings, token)
        claims = self._verified.get(token)
        if claims is None:
            claims = decode_access_token(self.settings, token)
            self._verified[token] = claims
        elif claims.expires_at <= datetime.now(UTC):
            del self._verified[token]
            raise jwt.ExpiredSignatureError("Signature has expired")
        return claims
