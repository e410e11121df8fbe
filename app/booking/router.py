from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from app.auth.deps import AdminUser, CurrentUser
from app.booking import service
from app.booking.schemas import (
    BookingCreate,
    BookingRead,
    BookingRequestRead,
    GeneralAdmissionRead,
    GeneralAdmissionSet,
    IdempotencyKey,
)
from app.core.deps import ClientIp, State
from app.core.openapi import problem_responses
from app.core.pagination import Page
from app.core.types import Id, Limit
from app.queue.deps import AdmissionGate
from app.queue.service import release_admission

router = APIRouter(tags=["bookings"])

IdemHeader = Annotated[
    IdempotencyKey | None,
    Header(
        alias="Idempotency-Key", description="Retries with the same key return the first result."
    ),
]


@router.post(
    "/concerts/{concert_id}/bookings",
    status_code=status.HTTP_201_CREATED,
    response_model=BookingRead | BookingRequestRead,
    responses={
        200: {"description": "Replay of an earlier request with the same Idempotency-Key"},
        202: {
            "description": "Accepted for asynchronous persistence (strategy redis_claim)",
            "model": BookingRequestRead,
        },
        **problem_responses(401, 403, 404, 409, 422, 429, 503),
    },
)
async def create_booking(
    concert_id: Id,
    body: BookingCreate,
    state: State,
    user: CurrentUser,
    ip: ClientIp,
    response: Response,
    admission: AdmissionGate,
    idempotency_key: IdemHeader = None,
) -> BookingRead | BookingRequestRead:
    await service.limit_holds(state, user_id=user.user_id, ip=ip)
    booking, replayed = await service.hold(
        state,
        user_id=user.user_id,
        concert_id=concert_id,
        body=body,
        idempotency_key=idempotency_key,
        # A concert on sale through a waiting room books through the Kafka pipeline.
        default_strategy=state.settings.sale_booking_strategy if admission else None,
    )
    if isinstance(booking, BookingRequestRead):
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Location"] = f"/bookings/requests/{booking.request_id}"
        return booking
    if replayed:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/bookings/{booking.id}"
    return booking


@router.get("/bookings/{booking_id}", responses=problem_responses(401, 404))
async def get_booking(booking_id: Id, state: State, user: CurrentUser) -> BookingRead:
    return await service.get_booking(
        state, booking_id=booking_id, user_id=user.user_id, admin=user.role == "admin"
    )


@router.get("/bookings/requests/{request_id}", responses=problem_responses(401, 404))
async def get_booking_request(
    request_id: uuid.UUID, state: State, user: CurrentUser
) -> BookingRequestRead:
    """Status of an accepted asynchronous hold (202 from strategy redis_claim): pending, then
    held (with the booking id) or rejected (with the reason)."""
    return await service.get_booking_request(state, request_id=request_id, user_id=user.user_id)


@router.delete("/bookings/{booking_id}", responses=problem_responses(401, 404, 409))
async def cancel_booking(booking_id: Id, state: State, user: CurrentUser) -> BookingRead:
    return await service.cancel(
        state, booking_id=booking_id, user_id=user.user_id, admin=user.role == "admin"
    )


@router.post("/bookings/{booking_id}/pay", responses=problem_responses(401, 402, 404, 409, 503))
async def pay_booking(
    booking_id: Id, state: State, user: CurrentUser, idempotency_key: IdemHeader = None
) -> BookingRead:
    # Paying is idempotent per booking (one provider key per attempt, replayed on retry), so
    # the header is accepted for client symmetry but not needed for safety.
    booking = await service.pay(state, booking_id=booking_id, user_id=user.user_id)
    # The purchase is complete: the fan's waiting-room slot goes to the next in line at once.
    await release_admission(state, concert_id=booking.concert_id, user_id=user.user_id)
    return booking


@router.get("/users/me/bookings", responses=problem_responses(400, 401))
async def my_bookings(
    state: State,
    user: CurrentUser,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Limit = 50,
) -> Page[BookingRead]:
    items, next_cursor = await service.list_my_bookings(
        state, user_id=user.user_id, cursor=cursor, limit=limit
    )
    return Page[BookingRead](items=items, next_cursor=next_cursor)


@router.put(
    "/concerts/{concert_id}/general-admission",
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def set_general_admission(
    concert_id: Id, body: GeneralAdmissionSet, state: State, _: AdminUser
) -> GeneralAdmissionRead:
    ga = await service.set_general_admission(state, concert_id=concert_id, data=body)
    return GeneralAdmissionRead.model_validate(ga)


@router.get("/concerts/{concert_id}/general-admission", responses=problem_responses(404))
async def get_general_admission(concert_id: Id, state: State) -> GeneralAdmissionRead:
    return GeneralAdmissionRead.model_validate(
        await service.get_general_admission(state, concert_id=concert_id)
    )
