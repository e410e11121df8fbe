"""The demo's ticket rush in small: 300 virtual fans for 50 seats against the real API
(2 uvicorn workers), a real admission worker, two booking consumers (one group), the payment
simulator and the session's broker. The run must sell exactly the seats, lose and duplicate no
booking request, and give every fan a final answer — the same checks `make demo` fails on."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from app.core.config import Settings
from app.devstack.broker import ensure_topics
from loadtests.rush import FINAL_ANSWERS, failed_invariants, run_rush
from tests.conftest import LiveServer
from tests.fixtures.booking_consumer import consumer_env, start_consumer
from tests.fixtures.payments import SimProcess
from tests.queue.conftest import SMALL_RUSH, WorkerProcess


async def test_small_rush_keeps_every_invariant(
    queue_api: LiveServer,
    admission_workers: Callable[..., WorkerProcess],
    sim_process: SimProcess,
    settings: Settings,
    tmp_path,
) -> None:
    await ensure_topics(settings.kafka_bootstrap, settings.kafka_topics)
    group = f"rush-{uuid.uuid4().hex[:8]}"
    consumers = [
        start_consumer(
            consumer_env(settings, TR_BOOKING_CONSUMER_GROUP=group), tmp_path / f"c{i}.log"
        )
        for i in range(2)
    ]
    admission_workers()
    cfg = SMALL_RUSH
    try:
        outcome = await run_rush(
            base_url=queue_api.url,
            settings=settings.model_copy(update={"booking_consumer_group": group}),
            cfg=cfg,
        )
    finally:
        for consumer in consumers:
            consumer.stop()
    checks = outcome.checks
    assert failed_invariants(checks) == [], (checks["answers"], outcome.recorder.errors)
    assert checks["sold"] == checks["seats"] == 50
    # Demand exceeds supply: requests flowed through Kafka and losers got definite answers.
    assert checks["kafka_request_ids"] == checks["db_outcomes"] >= checks["accepted_202"] > 0
    assert checks["lost"] == checks["phantom"] == checks["unrecorded"] == 0
    assert set(checks["answers"]) <= set(FINAL_ANSWERS)
    assert checks["answers"]["ticket"] > 0 and checks["answers"].get("sold_out", 0) > 0
    assert outcome.sold_out_after_s is not None
