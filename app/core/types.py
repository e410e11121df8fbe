"""Field types shared by the request schemas of every domain."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, StringConstraints

# One line of display text: no control characters, no leading/trailing whitespace.
_TEXT = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"

Text200 = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_TEXT)]
Text60 = Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=_TEXT)]
Text30 = Annotated[str, StringConstraints(min_length=1, max_length=30, pattern=_TEXT)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=120)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
MAX_ID = 2**63 - 1  # PostgreSQL bigint: larger ids are a 422, not a database error
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# Numbers in JSON bodies must be JSON numbers: lax pydantic would take `true` as 1 and "5" as 5,
# which the published schema calls invalid. (Path and query values arrive as text: plain Id.)
BodyId = Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
Limit = Annotated[int, Field(ge=1, le=200)]


def _iso_8601_only(value: object) -> object:
    # pydantic would read "1700000000" as a Unix timestamp; the API documents ISO 8601 only.
    if isinstance(value, int | float) or (
        isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ].+", value.strip())
    ):
        raise ValueError("expected an ISO 8601 date-time with a UTC offset")
    return value


def _plausible_year(value: datetime) -> datetime:
    # Far-off years are typos or probes, and years near 1 or 9999 do not survive a time zone
    # shift (PostgreSQL then hands back a value the API cannot render with an offset).
    if not 2000 <= value.astimezone(UTC).year <= 2199:
        raise ValueError("expected a date-time between the years 2000 and 2199")
    return value


IsoDatetime = Annotated[
    AwareDatetime, BeforeValidator(_iso_8601_only), AfterValidator(_plausible_year)
]
