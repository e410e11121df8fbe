from __future__ import annotations

from app.core.problems import Conflict, ProblemError, Unauthorized


class InvalidCredentials(Unauthorized):
    slug = "invalid-credentials"
    title = "Invalid email or password"


class InvalidToken(Unauthorized):
    slug = "invalid-token"
    title = "Invalid or expired token"


class RefreshTokenReused(Unauthorized):
    slug = "refresh-token-reused"
    title = "Refresh token already used; the session was revoked"


class EmailTaken(Conflict):
    slug = "email-taken"
    title = "An account with this email already exists"


class WeakPassword(ProblemError):
    status = 422
    slug = "weak-password"
    title = "Password does not meet the policy"
