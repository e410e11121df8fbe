"""Stopping background tasks without letting one hang a shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

log = structlog.get_logger(__name__)


async def stop_task(task: asyncio.Task[Any], *, name: str, timeout_s: float = 5.0) -> None:
    """Cancel `task` and wait for it to end, at most `timeout_s`.

    A loop that catches broad exceptions and carries on can lose a cancellation that a library
    turned into another exception on its way out (a Redis or database call that was timing out
    at that moment): the cancellation is repeated while waiting, and a task that still does not
    end is left behind with a warning instead of holding the process's shutdown forever."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            log.warning("background_task_did_not_stop", task=name, waited_s=timeout_s)
            return
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.5, left))
    if not task.cancelled() and task.exception() is not None:
        log.warning("background_task_failed", task=name, error=repr(task.exception()))
