"""`python -m app.admission`: the admission worker (run one or more replicas).

Serves every scheduled and open sale: opens them, draws the pre-queue, admits fans at the
current rate with signed admission tokens, adapts the rate to downstream pressure and closes
sales at closes_at or when sold out. SIGTERM/SIGINT release the leases so another replica takes
over at once. Metrics on `TR_ADMISSION_METRICS_PORT` (default 9103; 0 turns the server off).
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from prometheus_client import start_http_server

from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.main import build_state
from app.queue.worker import AdmissionWorker

log = structlog.get_logger(__name__)


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    state = build_state(settings)
    try:
        await AdmissionWorker(state).run(stop)
    finally:
        await state.payments.aclose()
        await state.redis.aclose()
        await state.engine.dispose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    if settings.admission_metrics_port:
        try:
            start_http_server(settings.admission_metrics_port, addr=settings.api_host)
            log.info("metrics_server_started", port=settings.admission_metrics_port)
        except OSError:
            # Admitting fans matters more than being scraped (e.g. two dev stacks on one host).
            log.error("metrics_server_failed", port=settings.admission_metrics_port, exc_info=True)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
