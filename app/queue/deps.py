"""Booking-route dependencies: the admission token from the sale's waiting room.

Use on a route with a `concert_id` path parameter, e.g.
`async def create_booking(concert_id: Id, ..., admission: AdmittedFan)`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from app.auth.deps import CurrentUser
from app.core.deps import State
from app.core.types import Id
from app.queue import service
from app.queue.errors import AdmissionRequired
from app.queue.tokens import AdmissionClaims

AdmissionHeader = Annotated[
    str | None,
    Header(
        alias="X-Admission-Token",
        max_length=4096,
        description="Admission token from `GET /sales/{id}/queue/me` once admitted.",
    ),
]


async def admitted_fan(
    concert_id: Id, state: State, user: CurrentUser, token: AdmissionHeader = None
) -> AdmissionClaims:
    """The caller's verified admission to the sale of `concert_id` (401/403 otherwise)."""
    if not token:
        raise AdmissionRequired("Send the admission token from the waiting room.")
    return await service.verify_admission(
        state, token=token, concert_id=concert_id, user_id=user.user_id
    )


async def admission_gate(
    concert_id: Id, state: State, user: CurrentUser, token: AdmissionHeader = None
) -> AdmissionClaims | None:
    """Like `admitted_fan` when the concert has a sale (scheduled, open or closed); None for a
    concert sold without a waiting room. A closed sale's concert stays gated: its admissions
    were revoked, so nobody books around the queue."""
    sale_id = await service.sale_of_concert(state, concert_id=concert_id)
    if sale_id is None:
        return None
    if not token:
        raise AdmissionRequired(
            f"This concert is sold through a waiting room: join it at /sales/{sale_id}/queue.",
            sale_id=sale_id,
            join_url=f"/sales/{sale_id}/queue",
        )
    return await service.verify_admission(
        state, token=token, concert_id=concert_id, user_id=user.user_id
    )


AdmittedFan = Annotated[AdmissionClaims, Depends(admitted_fan)]
AdmissionGate = Annotated[AdmissionClaims | None, Depends(admission_gate)]
