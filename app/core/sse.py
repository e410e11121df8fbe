"""Server-Sent Events written straight onto the ASGI connection.

FastAPI's EventSourceResponse relays every event through two anyio memory streams, a task
group and a keep-alive task per connection, and Starlette's StreamingResponse adds another
task group: with tens of thousands of fans on the waiting room's push channel that relay was
a sixth of an API worker's CPU. Here each stream is its generator plus one task that waits for
the client to go away; heart-beats are the generator's business (it knows when it is idle).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

# What the OpenAPI documents for a text/event-stream response (the frames, not their data).
SSE_ITEM_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


def event(data: str, *, name: str | None = None, event_id: str | None = None) -> bytes:
    """One event frame. `data` must be a single line (compact JSON is)."""
    head = (f"event: {name}\n" if name else "") + (f"id: {event_id}\n" if event_id else "")
    return f"{head}data: {data}\n\n".encode()


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


def retry(ms: int) -> bytes:
    return f"retry: {ms}\n\n".encode()


class EventStreamResponse(Response):
    """Streams the frames an async iterator yields until it ends or the client disconnects
    (then the iterator is cancelled and closed, so its `finally`/`async with` clean up)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.frames = frames
        self.status_code = status_code
        self.background = None
        self.init_headers(
            {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"} | dict(headers or {})
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        pump = asyncio.create_task(self._pump(self.frames, send))
        watch = asyncio.create_task(_until_disconnect(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _pump(frames: AsyncIterator[bytes], send: Send) -> None:
        try:
            async for frame in frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
