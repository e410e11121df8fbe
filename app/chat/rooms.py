"""Room names (`artist.12`, `concert.7`) and their STOMP destinations (`/topic/artist.12`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from app.chat.errors import InvalidDestination

ROOM_PATTERN = r"^(artist|concert)\.([1-9][0-9]{0,17})$"
_ROOM = re.compile(ROOM_PATTERN)
TOPIC = "/topic/"


class RoomKind(StrEnum):
    artist = "artist"
    concert = "concert"


@dataclass(frozen=True, slots=True)
class Room:
    kind: RoomKind
    ref_id: int

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.ref_id}"

    @property
    def destination(self) -> str:
        return TOPIC + self.name

    @classmethod
    def parse(cls, name: str) -> Room:
        match = _ROOM.fullmatch(name)
        if match is None:
            raise InvalidDestination(
                f"{name[:80]!r} is not a room: use artist.<id> or concert.<id>."
            )
        return cls(RoomKind(match.group(1)), int(match.group(2)))

    @classmethod
    def from_destination(cls, destination: str) -> Room:
        if not destination.startswith(TOPIC):
            raise InvalidDestination(
                f"{destination[:80]!r} is not a chat destination: use "
                "/topic/artist.<id> or /topic/concert.<id>."
            )
        return cls.parse(destination.removeprefix(TOPIC))
