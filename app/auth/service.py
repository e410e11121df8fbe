"""Sign-up, login, refresh-token rotation with reuse detection, logout."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import jwt
from redis.asyncio import Redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import repository
from app.auth.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidToken,
    RefreshTokenReused,
    WeakPassword,
)
from app.auth.models import RefreshToken, Role, User
from app.auth.schemas import TokenPair
from app.core import ratelimit
from app.core.config import Settings
from app.core.metrics import AUTH_EVENTS
from app.core.redis import Keys
from app.core.revocations import RevocationList
from app.core.security import (
    AccessClaims,
    hash_password,
    issue_access_token,
    verify_password,
)
from app.core.state import AppState


def check_password_policy(settings: Settings, password: str, *, email: str) -> None:
    if len(password) < settings.password_min_length:
        raise WeakPassword(f"Use at least {settings.password_min_length} characters.")
    if password.lower() == email.lower() or len(set(password)) < 4:
        raise WeakPassword("Choose a password that is not your email or a repeated character.")


async def signup(
    session: AsyncSession,
    redis: Redis,
    keys: Keys,
    settings: Settings,
    *,
    email: str,
    password: str,
    display_name: str,
    ip: str,
) -> User:
    """Create a fan account."""
    await ratelimit.enforce(
        redis, [(keys("rl", "signup", "ip", ip), settings.signup_limit_per_ip, 3600)]
    )
    check_password_policy(settings, password, email=email)
    return await create_user(session, email=email, password=password, display_name=display_name)


async def create_user(
    session: AsyncSession, *, email: str, password: str, display_name: str, role: Role = Role.fan
) -> User:
    user = User(
        email=email, password_hash=hash_password(password), display_name=display_name, role=role
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise EmailTaken() from exc
    return user


async def login(
    session: AsyncSession,
    redis: Redis,
    keys: Keys,
    settings: Settings,
    *,
    email: str,
    password: str,
    ip: str,
) -> TokenPair:
    """Check credentials (same answer and cost for unknown emails) and open a token family."""
    window = settings.login_limit_window_s
    account_key = hashlib.sha256(email.encode()).hexdigest()[:32]
    await ratelimit.enforce(
        redis,
        [
            (keys("rl", "login", "account", account_key), settings.login_limit_per_account, window),
            (keys("rl", "login", "ip", ip), settings.login_limit_per_ip, window),
        ],
    )
    user = await repository.get_user_by_email(session, email)
    if not verify_password(password, user.password_hash if user else None) or user is None:
        AUTH_EVENTS.labels("login_failed").inc()
        raise InvalidCredentials()
    AUTH_EVENTS.labels("login_ok").inc()
    pair = await _issue_pair(session, settings, user=user, family_id=uuid.uuid4())
    await session.commit()
    return pair


def _split_refresh(token: str) -> tuple[uuid.UUID, bytes]:
    try:
        raw_id, secret = token.split(".", 1)
        token_id = uuid.UUID(bytes=base64.urlsafe_b64decode(raw_id + "=" * (-len(raw_id) % 4)))
    except ValueError as exc:
        raise InvalidToken() from exc
    return token_id, hashlib.sha256(secret.encode()).digest()


async def _issue_pair(
    session: AsyncSession, settings: Settings, *, user: User, family_id: uuid.UUID
) -> TokenPair:
    token_id, secret = uuid.uuid4(), secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            id=token_id,
            family_id=family_id,
            user_id=user.id,
            token_hash=hashlib.sha256(secret.encode()).digest(),
            expires_at=datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_s),
        )
    )
    access, _ = issue_access_token(settings, user_id=user.id, role=user.role)
    encoded_id = base64.urlsafe_b64encode(token_id.bytes).decode().rstrip("=")
    return TokenPair(
        access_token=access,
        refresh_token=f"{encoded_id}.{secret}",
        expires_in=settings.access_token_ttl_s,
    )


async def refresh(
    session: AsyncSession,
    redis: Redis,
    keys: Keys,
    settings: Settings,
    *,
    refresh_token: str,
    ip: str,
) -> TokenPair:
    """Rotate a refresh token. Presenting an already-rotated token revokes its whole family."""
    await ratelimit.enforce(
        redis,
        [
            (
                keys("rl", "refresh", "ip", ip),
                settings.refresh_limit_per_ip,
                settings.login_limit_window_s,
            )
        ],
    )
    token_id, digest = _split_refresh(refresh_token)
    now = datetime.now(UTC)
    row = await repository.lock_refresh_token(session, token_id)
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise InvalidToken()
    if row.revoked_at is not None or row.expires_at <= now:
        raise InvalidToken()
    if row.used_at is not None:
        await repository.revoke_family(session, row.family_id, now)
        await session.commit()
        AUTH_EVENTS.labels("refresh_reuse").inc()
        raise RefreshTokenReused()
    user = await repository.get_user(session, row.user_id)
    if user is None:
        raise InvalidToken()
    row.used_at = now
    pair = await _issue_pair(session, settings, user=user, family_id=row.family_id)
    await session.commit()
    AUTH_EVENTS.labels("refresh").inc()
    return pair


async def logout(
    session: AsyncSession,
    revocations: RevocationList,
    *,
    refresh_token: str,
    access: AccessClaims | None,
) -> None:
    """Revoke the refresh-token family and, if given, deny the access token until it expires."""
    token_id, digest = _split_refresh(refresh_token)
    row = await repository.lock_refresh_token(session, token_id)
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise InvalidToken()
    await repository.revoke_family(session, row.family_id, datetime.now(UTC))
    await session.commit()
    if access is not None and access.expires_at > datetime.now(UTC):
        await revocations.revoke(access.jti, access.expires_at.timestamp())
    AUTH_EVENTS.labels("logout").inc()


async def authenticate(state: AppState, *, token: str) -> AccessClaims:
    """Validate an access token and check it was not logged out."""
    try:
        claims = state.tokens.verify(token)
    except jwt.InvalidTokenError as exc:
        raise InvalidToken() from exc
    if await state.revocations.is_revoked(claims.jti):
        raise InvalidToken("This token was revoked by a logout.")
    return claims
