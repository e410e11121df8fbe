from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.auth import repository, service
from app.auth.deps import CurrentUser, OptionalUser
from app.auth.errors import InvalidToken
from app.auth.schemas import LoginRequest, RefreshRequest, SignupRequest, TokenPair, UserRead
from app.core.deps import ClientIp, DbSession, State
from app.core.openapi import problem_responses

router = APIRouter(tags=["auth"])


@router.post(
    "/auth/signup",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(409, 422, 429),
)
async def signup(body: SignupRequest, db: DbSession, state: State, ip: ClientIp) -> UserRead:
    user = await service.signup(
        db,
        state.redis,
        state.keys,
        state.settings,
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        ip=ip,
    )
    return UserRead.model_validate(user)


@router.post("/auth/login", responses=problem_responses(401, 422, 429))
async def login(body: LoginRequest, db: DbSession, state: State, ip: ClientIp) -> TokenPair:
    return await service.login(
        db, state.redis, state.keys, state.settings, email=body.email, password=body.password, ip=ip
    )


@router.post("/auth/refresh", responses=problem_responses(401, 422, 429))
async def refresh(body: RefreshRequest, db: DbSession, state: State, ip: ClientIp) -> TokenPair:
    return await service.refresh(
        db, state.redis, state.keys, state.settings, refresh_token=body.refresh_token, ip=ip
    )


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 422),
)
async def logout(body: RefreshRequest, db: DbSession, state: State, user: OptionalUser) -> Response:
    await service.logout(db, state.revocations, refresh_token=body.refresh_token, access=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/me", responses=problem_responses(401))
async def me(user: CurrentUser, db: DbSession) -> UserRead:
    row = await repository.get_user(db, user.user_id)
    if row is None:
        raise InvalidToken("The account no longer exists.")
    return UserRead.model_validate(row)
