from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.auth.deps import AdminUser, CurrentUser
from app.core.deps import ClientIp, State
from app.core.openapi import problem_responses
from app.core.sse import SSE_ITEM_SCHEMA, EventStreamResponse
from app.core.types import Id
from app.queue import edge, push, service
from app.queue.errors import NotAcceptable
from app.queue.models import CloseReason
from app.queue.schemas import QueueStatus, RateRead, RateSet, SaleCreate, SaleRead, SaleStats

router = APIRouter(tags=["queue"])

_NO_STORE = {"Cache-Control": "no-store"}


@router.post(
    "/sales",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def create_sale(body: SaleCreate, state: State, _: AdminUser, response: Response) -> SaleRead:
    """Schedule a sale (one live sale per concert). Fans may join its pre-queue from
    `opens_at - TR_QUEUE_PREQUEUE_WINDOW_S`; the admission worker opens it at `opens_at`."""
    sale = await service.create_sale(state, data=body)
    response.headers["Location"] = f"/sales/{sale.id}"
    return SaleRead.model_validate(sale)


@router.get("/sales/{sale_id}", responses=problem_responses(404))
async def get_sale(sale_id: Id, state: State) -> SaleRead:
    return SaleRead.model_validate(await service.get_sale(state, sale_id=sale_id))


@router.post("/sales/{sale_id}:open", responses=problem_responses(401, 403, 404, 409))
async def open_sale(sale_id: Id, state: State, _: AdminUser) -> SaleRead:
    """Open a scheduled sale now; the pre-queue is drawn into random places."""
    return SaleRead.model_validate(await service.open_sale(state, sale_id=sale_id))


@router.post("/sales/{sale_id}:close", responses=problem_responses(401, 403, 404, 409))
async def close_sale(sale_id: Id, state: State, _: AdminUser) -> SaleRead:
    """Close now: admissions are revoked and everyone still waiting is told the sale closed."""
    sale = await service.close_sale(state, sale_id=sale_id, reason=CloseReason.manual)
    return SaleRead.model_validate(sale)


@router.put("/sales/{sale_id}/rate", responses=problem_responses(401, 403, 404, 409, 422))
async def set_rate(sale_id: Id, body: RateSet, state: State, _: AdminUser) -> RateRead:
    return await service.set_rate(state, sale_id=sale_id, data=body)


@router.get("/sales/{sale_id}/stats", responses=problem_responses(401, 403, 404))
async def sale_stats(sale_id: Id, state: State, _: AdminUser, response: Response) -> SaleStats:
    response.headers.update(_NO_STORE)
    return await service.sale_stats(state, sale_id=sale_id)


@router.post(
    "/sales/{sale_id}/queue",
    status_code=status.HTTP_201_CREATED,
    response_model=QueueStatus,
    responses={
        200: {"description": "Already in line: the same place", "model": QueueStatus},
        **problem_responses(401, 404, 409, 429),
    },
)
async def join_queue(sale_id: Id, state: State, user: CurrentUser, ip: ClientIp) -> Response:
    """Take a place in line, or get the one you have (one place per account: refreshing, a
    second tab or joining again keep it). Before the sale opens this is the pre-queue."""
    # Usually answered by QueueEdgeMiddleware with the same function, ahead of the router.
    return await edge.join_response(state, sale_id=sale_id, user_id=user.user_id, ip=ip)


@router.get(
    "/sales/{sale_id}/queue/me",
    response_model=QueueStatus,
    responses=problem_responses(401, 404, 429),
)
async def my_status(sale_id: Id, state: State, user: CurrentUser, ip: ClientIp) -> Response:
    """Your state in line. Checking keeps your place; follow `poll_after_seconds` (or use the
    event stream) — a place with no check for the grace period expires."""
    return await edge.status_response(state, sale_id=sale_id, user_id=user.user_id, ip=ip)


@router.delete(
    "/sales/{sale_id}/queue/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404),
)
async def leave_queue(sale_id: Id, state: State, user: CurrentUser) -> Response:
    """Give up your place or admission (the slot goes to the next fan at once). Idempotent."""
    await service.leave(state, sale_id=sale_id, user_id=user.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _stream_start(
    sale_id: Id, request: Request, state: State, user: CurrentUser, ip: ClientIp
) -> QueueStatus:
    # Runs before the stream starts, so refusals are still problem+json responses.
    if "text/event-stream" not in request.headers.get("accept", ""):
        raise NotAcceptable("This endpoint streams text/event-stream; send that Accept header.")
    return await service.status(state, sale_id=sale_id, user_id=user.user_id, ip=ip, push=True)


@router.get(
    "/sales/{sale_id}/queue/me/events",
    response_class=EventStreamResponse,
    responses={
        200: {
            "description": "The stream of your states",
            "content": {"text/event-stream": {"itemSchema": SSE_ITEM_SCHEMA}},
        },
        **problem_responses(401, 404, 406, 429),
    },
)
async def my_status_events(
    sale_id: Id,
    request: Request,
    state: State,
    user: CurrentUser,
    first: Annotated[QueueStatus, Depends(_stream_start)],
) -> EventStreamResponse:
    """Your state in line as Server-Sent Events (send `Accept: text/event-stream`), so you need
    not poll: `status` events carry a QueueStatus; the stream ends after admitted (with the
    token), expired, closed or sold_out. An open stream keeps your place."""
    hub = push.hub_for(request.app, state)
    return EventStreamResponse(
        push.event_stream(hub, sale_id=sale_id, user_id=user.user_id, first=first)
    )
