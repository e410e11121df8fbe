"""Local stack manager: PostgreSQL, Redis, a Tansu broker and the app processes under `.run/`."""

from __future__ import annotations


class StackError(RuntimeError):
    """A local-stack step failed; the message says what went wrong and what to do about it."""
