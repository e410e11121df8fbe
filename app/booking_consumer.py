"""`python -m app.booking_consumer`: one member of the `booking-consumer` group.

SIGTERM/SIGINT finish the batch in progress, commit it and leave the group. Metrics are served on
`TR_BOOKING_CONSUMER_METRICS_PORT` (default 9102; 0 turns the server off).
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from prometheus_client import start_http_server

from app.booking.consumer import BookingConsumer
from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.main import build_state

log = structlog.get_logger(__name__)


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    state = build_state(settings)
    try:
        await BookingConsumer(state).run(stop)
    except Exception:
        # A bug, not an outage (those are retried): exit non-zero; the batch is redelivered.
        log.exception("booking_consumer_crashed")
        raise
    finally:
        await state.payments.aclose()
        await state.redis.aclose()
        await state.engine.dispose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    if settings.booking_consumer_metrics_port:
        start_http_server(settings.booking_consumer_metrics_port, addr=settings.api_host)
        log.info("metrics_server_started", port=settings.booking_consumer_metrics_port)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
