"""Background tasks stop on shutdown even when they swallow a cancellation."""

from __future__ import annotations

import asyncio
import time

from app.core.tasks import stop_task


async def test_a_task_that_swallows_one_cancellation_still_stops() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                # What a broad `except` around a library call does when the library turned the
                # cancellation into its own error: carry on.
                swallowed += 1
                if swallowed > 1:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await stop_task(task, name="stubborn", timeout_s=5)
    assert task.cancelled() and swallowed == 2


async def test_a_task_that_never_stops_is_left_behind_after_the_timeout() -> None:
    stop = asyncio.Event()

    async def immortal() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    started = time.monotonic()
    await stop_task(task, name="immortal", timeout_s=1.0)
    assert 0.9 <= time.monotonic() - started < 3
    assert not task.done()
    stop.set()
    task.cancel()
    await asyncio.wait({task}, timeout=1)
    assert task.done()
