"""Chat HTTP routes (history, room info, moderation) and the STOMP WebSocket endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, WebSocket, status

from app.auth.deps import AdminUser, CurrentUser
from app.chat import service
from app.chat.hub import ChatHub
from app.chat.rooms import Room
from app.chat.schemas import (
    MessagePage,
    RoomName,
    RoomRead,
    RoomSettingsUpdate,
    SanctionCreate,
    SanctionRead,
)
from app.chat.stomp import StompSession
from app.core.deps import State
from app.core.openapi import problem_responses
from app.core.state import AppState
from app.core.types import Id

router = APIRouter(tags=["chat"])

RoomPath = Annotated[RoomName, Path(description="`artist.<id>` or `concert.<id>`")]
MessageId = Annotated[str, Path(pattern=r"^[0-9]{1,19}-[0-9]{1,19}$")]
Kind = Annotated[str, Path(pattern=r"^(mutes|bans)$")]
_KIND = {"mutes": "mute", "bans": "ban"}


async def _room(state: AppState, name: str) -> Room:
    return await service.get_room(state, name=name)


@router.websocket("/ws/stomp")
async def stomp_endpoint(websocket: WebSocket) -> None:
    """STOMP 1.2 over WebSocket (subprotocol `v12.stomp` or none)."""
    state: AppState = websocket.app.state.tr
    hub: ChatHub = websocket.app.state.chat_hub
    await StompSession(websocket, state, hub).run()


@router.get("/rooms/{room}", responses=problem_responses(401, 404))
async def get_room(room: RoomPath, state: State, _: CurrentUser) -> RoomRead:
    """The room's destination, slow mode and how many users are in it right now."""
    return await service.room_info(state, room=await _room(state, room))


@router.get("/rooms/{room}/messages", responses=problem_responses(401, 403, 404))
async def list_messages(
    room: RoomPath,
    state: State,
    user: CurrentUser,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}-[0-9]{1,19}$")] = None,
) -> MessagePage:
    """Recent history, oldest first; page back with `before=<next_before>`."""
    checked = await _room(state, room)
    await service.check_can_read(state, room=checked, user_id=user.user_id)
    items = await service.history(state, room=checked, limit=limit, before=before)
    response.headers["Cache-Control"] = "no-store"
    return MessagePage(items=items, next_before=items[0].id if len(items) == limit else None)


@router.put("/rooms/{room}/settings", responses=problem_responses(401, 403, 404, 422))
async def update_settings(
    room: RoomPath, body: RoomSettingsUpdate, state: State, _: AdminUser
) -> RoomRead:
    """Set slow mode: each fan may send one message per `slow_mode_s` seconds (admins exempt)."""
    return await service.set_slow_mode(
        state, room=await _room(state, room), seconds=body.slow_mode_s
    )


# Before the sanction routes: `/rooms/{room}/{kind}/{user_id}` would match this path too.
@router.delete(
    "/rooms/{room}/messages/{message_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
async def delete_message(
    room: RoomPath, message_id: MessageId, state: State, admin: AdminUser
) -> Response:
    """Remove a message from history; subscribers get a `message_deleted` event."""
    await service.delete_message(
        state, room=await _room(state, room), message_id=message_id, by=admin.user_id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/rooms/{room}/{kind}/{user_id}", responses=problem_responses(401, 403, 404, 422))
async def add_sanction(
    room: RoomPath, kind: Kind, user_id: Id, body: SanctionCreate, state: State, admin: AdminUser
) -> SanctionRead:
    """Mute (`mutes`: reads but cannot send) or ban (`bans`: is disconnected from the room
    and can neither subscribe nor send) a user, for `duration_s` or until lifted."""
    return await service.sanction(
        state,
        room=await _room(state, room),
        user_id=user_id,
        kind=_KIND[kind],
        data=body,
        by=admin.user_id,
    )


@router.delete(
    "/rooms/{room}/{kind}/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
async def lift_sanction(
    room: RoomPath, kind: Kind, user_id: Id, state: State, _: AdminUser
) -> Response:
    await service.lift_sanction(
        state, room=await _room(state, room), user_id=user_id, kind=_KIND[kind]
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
