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

_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def optional_user(state: State, credentials: Credentials) -> AccessClaims | None:
    if credentials is None:
        return None
    return await service.authenticate(state, token=credentials.credentials)


async def current_user(state: State, credentials: Credentials) -> AccessClaims:
    if credentials is None:
        raise InvalidToken("Send `Authorization: Bearer <access token>`.")
    return await service.authenticate(state, token=credentials.credentials)


async def admin_user(user: Annotated[AccessClaims, Depends(current_user)]) -> AccessClaims:
    if user.role != "admin":
        raise Forbidden("This action needs the admin role.")
    return user


OptionalUser = Annotated[AccessClaims | None, Depends(optional_user)]
CurrentUser = Annotated[AccessClaims, Depends(current_user)]
AdminUser = Annotated[AccessClaims, Depends(admin_user)]
