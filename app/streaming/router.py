from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response, status

from app.auth.deps import AdminUser, CurrentUser, OptionalUser
from app.core.deps import State
from app.core.openapi import problem_responses
from app.core.pagination import Page
from app.core.types import Id, Limit
from app.streaming import service
from app.streaming.errors import CallbackInvalid
from app.streaming.schemas import (
    ChannelAdminRead,
    ChannelCreate,
    ChannelRead,
    ChannelUpdate,
    ChannelWithKey,
    ViewerHeartbeat,
)

router = APIRouter(prefix="/channels", tags=["streaming"])

# Answers that carry a stream key must never sit in a cache.
_NO_STORE = {"Cache-Control": "no-store"}


@router.get("", responses=problem_responses(400, 422))
async def list_channels(
    state: State,
    live: Annotated[bool | None, Query(description="Live (true) or off (false) only")] = None,
    artist_id: Annotated[Id | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Limit = 50,
) -> Page[ChannelRead]:
    items, next_cursor = await service.list_channels(
        state, live=live, artist_id=artist_id, cursor=cursor, limit=limit
    )
    return Page[ChannelRead](items=items, next_cursor=next_cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 422),
)
async def create_channel(
    body: ChannelCreate, state: State, _: AdminUser, response: Response
) -> ChannelWithKey:
    """Create an OFF channel for an artist. The answer carries the stream key: it is shown
    only here and after a rotation (only its hash is stored)."""
    channel = await service.create_channel(state, data=body)
    response.headers["Location"] = f"/channels/{channel.id}"
    response.headers.update(_NO_STORE)
    return channel


@router.get(
    "/{channel_id}",
    response_model=ChannelAdminRead | ChannelRead,
    responses=problem_responses(401, 404, 422),
)
async def get_channel(channel_id: Id, state: State, user: OptionalUser) -> ChannelRead:
    """A channel with its state, viewers and playback URL; admins also see the ingest URL
    and the stream key's last four characters."""
    admin = user is not None and user.role == "admin"
    return await service.get_channel(state, channel_id=channel_id, admin=admin)


@router.patch("/{channel_id}", responses=problem_responses(401, 403, 404, 422))
async def update_channel(
    channel_id: Id, body: ChannelUpdate, state: State, _: AdminUser
) -> ChannelAdminRead:
    return await service.update_channel(state, channel_id=channel_id, data=body)


@router.delete(
    "/{channel_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def delete_channel(channel_id: Id, state: State, _: AdminUser) -> Response:
    await service.delete_channel(state, channel_id=channel_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{channel_id}/stream-key:rotate", responses=problem_responses(401, 403, 404, 422))
async def rotate_stream_key(
    channel_id: Id, state: State, _: AdminUser, response: Response
) -> ChannelWithKey:
    """Issue a new stream key; the old one stops working at once (a broadcast on it is cut
    within one nginx update interval)."""
    response.headers.update(_NO_STORE)
    return await service.rotate_stream_key(state, channel_id=channel_id)


@router.post("/{channel_id}/heartbeat", responses=problem_responses(401, 404, 409, 422))
async def heartbeat(channel_id: Id, state: State, user: CurrentUser) -> ViewerHeartbeat:
    """Players of signed-in fans call this while playing; the channel's viewer count is the
    number of fans with a heartbeat in the viewer window."""
    count = await service.heartbeat(state, channel_id=channel_id, user_id=user.user_id)
    window = state.settings.streaming_viewer_window_s
    return ViewerHeartbeat(viewer_count=count, next_heartbeat_s=max(1, window // 3))


# nginx-rtmp callbacks: machine-to-machine, authenticated by the shared `secret` query
# parameter of the callback URLs in the nginx config, so not part of the public OpenAPI.
rtmp_router = APIRouter(prefix="/rtmp", include_in_schema=False)

_MAX_CALLBACK_BYTES = 16_384


async def _callback(request: Request, state: State, secret: str | None) -> dict[str, str]:
    service.check_callback_secret(state, secret=secret)
    body = await request.body()
    if len(body) > _MAX_CALLBACK_BYTES:
        raise CallbackInvalid("The callback body is too large.")
    form: dict[str, str] = {}
    # nginx writes its own fields first and then the publisher's URL arguments: the first
    # occurrence wins, so `rtmp://…/live/KEY?name=x` cannot override `name`.
    for field, value in parse_qsl(body.decode(errors="replace"), keep_blank_values=True):
        form.setdefault(field, value)
    return form


def _required(form: dict[str, str], *fields: str) -> list[str]:
    missing = [f for f in fields if not form.get(f)]
    if missing:
        raise CallbackInvalid(f"Missing field(s): {', '.join(missing)}.")
    return [form[f] for f in fields]


@rtmp_router.post("/on_publish")
async def on_publish(
    request: Request, state: State, background: BackgroundTasks, secret: str | None = None
) -> Response:
    """2xx/3xx lets nginx accept the publish; any other status refuses it. The 302 renames
    the stream to the channel's public name (HLS directory and playback path)."""
    form = await _callback(request, state, secret)
    key, client_id = _required(form, "name", "clientid")
    channel = await service.on_publish(
        state, stream_key=key, client_id=client_id, addr=form.get("addr", "")
    )
    background.add_task(service.announce_live_best_effort, state, channel=channel)
    return Response(status_code=status.HTTP_302_FOUND, headers={"Location": channel.public_name})


@rtmp_router.post("/on_relay_publish")
async def on_relay_publish(request: Request, state: State, secret: str | None = None) -> Response:
    """on_publish of nginx's `hls` application, which the ingest pushes renamed streams to."""
    form = await _callback(request, state, secret)
    (name,) = _required(form, "name")
    await service.on_relay_publish(state, public_name=name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@rtmp_router.post("/on_update")
async def on_update(request: Request, state: State, secret: str | None = None) -> Response:
    """Periodic for every session; a non-2xx for a publisher makes nginx drop it."""
    form = await _callback(request, state, secret)
    if form.get("call") == "update_publish":
        key, client_id = _required(form, "name", "clientid")
        await service.on_update(state, stream_key=key, client_id=client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@rtmp_router.post("/on_publish_done")
async def on_publish_done(request: Request, state: State, secret: str | None = None) -> Response:
    form = await _callback(request, state, secret)
    key, client_id = _required(form, "name", "clientid")
    await service.on_publish_done(state, stream_key=key, client_id=client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
