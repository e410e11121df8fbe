from __future__ import annotations

from app.core.problems import Conflict, Forbidden, NotFound, ProblemError


class ChannelNotFound(NotFound):
    slug = "channel-not-found"
    title = "Channel not found"


class ChannelLive(Conflict):
    slug = "channel-live"
    title = "The channel is live"


class ChannelNotLive(Conflict):
    slug = "channel-not-live"
    title = "The channel is not live"


class ChannelAlreadyLive(Conflict):
    """A second publisher for a channel whose live session is still reporting."""

    slug = "channel-already-live"
    title = "The channel is already live from another publisher"


class CallbackForbidden(Forbidden):
    slug = "rtmp-callback-forbidden"
    title = "The RTMP callback secret is missing or wrong"


class StreamKeyInvalid(Forbidden):
    slug = "stream-key-invalid"
    title = "The stream key is not valid"


class StreamSessionEnded(Forbidden):
    """An update for a session that is no longer the channel's (key rotated, channel gone)."""

    slug = "stream-session-ended"
    title = "This publishing session is no longer allowed"


class CallbackInvalid(ProblemError):
    status = 400
    slug = "rtmp-callback-invalid"
    title = "The RTMP callback lacks a field nginx-rtmp always sends"
