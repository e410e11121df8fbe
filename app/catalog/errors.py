from __future__ import annotations

from app.core.problems import Conflict, NotFound, ProblemError


class AgencyNotFound(NotFound):
    slug = "agency-not-found"
    title = "Agency not found"


class ArtistNotFound(NotFound):
    slug = "artist-not-found"
    title = "Artist not found"


class VenueNotFound(NotFound):
    slug = "venue-not-found"
    title = "Venue not found"


class ConcertNotFound(NotFound):
    slug = "concert-not-found"
    title = "Concert not found"


class CatalogConflict(Conflict):
    slug = "catalog-conflict"
    title = "The change conflicts with existing catalog data"


class InvalidStatusTransition(Conflict):
    slug = "invalid-status-transition"
    title = "The concert cannot move to that status"


class SeatMapExists(Conflict):
    slug = "seat-map-exists"
    title = "The concert already has a seat map"


class InvalidHierarchy(ProblemError):
    status = 422
    slug = "invalid-artist-hierarchy"
    title = "Invalid artist hierarchy"
