from __future__ import annotations

from app.core.problems import Forbidden, NotFound, ProblemError, RateLimited


class RoomNotFound(NotFound):
    slug = "chat-room-not-found"
    title = "Chat room not found"


class InvalidDestination(ProblemError):
    slug = "chat-invalid-destination"
    title = "Not a chat destination"


class MessageNotFound(NotFound):
    slug = "chat-message-not-found"
    title = "Chat message not found"


class InvalidMessage(ProblemError):
    status = 422
    slug = "chat-invalid-message"
    title = "Invalid chat message"


class MessageTooLarge(ProblemError):
    status = 413
    slug = "chat-message-too-large"
    title = "Chat message too large"


class Muted(Forbidden):
    slug = "chat-muted"
    title = "You are muted in this room"


class Banned(Forbidden):
    slug = "chat-banned"
    title = "You are banned from this room"


class SendRateLimited(RateLimited):
    slug = "chat-rate-limited"
    title = "Sending too fast"


class SlowMode(RateLimited):
    slug = "chat-slow-mode"
    title = "Slow mode: wait before sending again in this room"
