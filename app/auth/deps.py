"""`CurrentUser` / `AdminUser` dependencies built on the bearer access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import service
from app.auth.errors import InvalidToken
from app.core.deps import State
from app.core.problems import Forbidden
from app.core.security import AccessClaims
from app.core.state import AppState

_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def optional_user(state: State, credentials: Credentials) -> AccessClaims | None:
    if credentials is None:
        return None
    return await service.authenticate(state, token=credentials.credentials)


async def user_of_token(state: AppState, token: str | None) -> AccessClaims:
    """The caller of a bearer token; no token is a 401 that says how to send one."""
    if not token:
        raise InvalidToken("Send `Authorization: Bearer <access token>`.")
    return await service.authenticate(state, token=token)


async def current_user(state: State, credentials: Credentials) -> AccessClaims:
    return await user_of_token(state, credentials.credentials if credentials else None)


async def admin_user(user: Annotated[AccessClaims, Depends(current_user)]) -> AccessClaims:
    if user.role != "admin":
        raise Forbidden("This action needs the admin role.")
    return user


OptionalUser = Annotated[AccessClaims | None, Depends(optional_user)]
CurrentUser = Annotated[AccessClaims, Depends(current_user)]
AdminUser = Annotated[AccessClaims, Depends(admin_user)]
