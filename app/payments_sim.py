"""`python -m app.payments_sim`: the fake payment provider, a process of its own.

Charges are idempotent per key and kept in memory (a restart forgets them). Faults are set at
start (CLI flags, or `TR_PAYMENTS_SIM_*` variables) and changed at runtime by `POST /_control`:
- latency: each request waits latency_ms ± jitter_ms (uniform) before it is processed;
- failure_rate: share of requests answered 500; `failure_point` "mixed" alternates failing
  before the charge is recorded and after it (real providers do both), or pins one of the two;
- decline_rate: share of new charges recorded as declined;
- outages: `outage: true` or a window of seconds after start (`--outage 30-45`); every charge
  or refund then gets 503 (`outage_mode: error`) or hangs until the outage ends (`hang`);
- first_attempt_only: latency and failures hit only the first request for a key, so a retry
  under the same key deterministically gets through.
`GET /charges/{key}`, `GET /stats`, `/_control`, `/healthz` and `/metrics` (Prometheus: the
RED metrics of every route) are inspection endpoints that no fault touches. All times are UTC;
amounts are integer minor units.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

import uvicorn
from fastapi import FastAPI, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from app.core.config import get_settings
from app.core.logging import configure_logging
from app.core.metrics import render_metrics
from app.core.middleware import RequestContextMiddleware
from app.core.problems import (
    Conflict,
    NotFound,
    ProblemError,
    ServiceUnavailable,
    install_problem_handlers,
)

ENV_PREFIX = "TR_PAYMENTS_SIM_"
# A hung request still ends some day, so shutdown is never blocked by it for long.
HANG_MAX_S = 60.0
HANG_POLL_S = 0.05

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ChargeStatus = Literal["succeeded", "declined", "refunded"]
FailurePoint = Literal["before", "after"]


class ChargeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idempotency_key: IdempotencyKey
    amount_minor: int = Field(gt=0, strict=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idempotency_key: IdempotencyKey


class ChargeRead(BaseModel):
    charge_id: str
    idempotency_key: str
    status: ChargeStatus
    amount_minor: int
    currency: str
    created_at: datetime
    refunded_at: datetime | None = None


class Knobs(BaseModel):
    """Fault settings; `POST /_control` changes only the fields it sends."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0, ge=0)
    jitter_ms: float = Field(default=0, ge=0)
    failure_rate: float = Field(default=0, ge=0, le=1)
    decline_rate: float = Field(default=0, ge=0, le=1)
    failure_point: Literal["mixed", "before", "after"] = "mixed"
    outage: bool = False
    outage_mode: Literal["error", "hang"] = "error"
    first_attempt_only: bool = False


class Stats(BaseModel):
    requests: int = 0  # charges and refunds that passed validation
    charges_created: int = 0  # declined ones included
    replays: int = 0  # charges answered from an earlier one under the same key
    declines: int = 0
    conflicts: int = 0  # a key reused with another amount or currency
    refunds: int = 0
    failures_injected: int = 0
    outage_rejections: int = 0


class InjectedFailure(ProblemError):
    status = 500
    slug = "injected-failure"
    title = "Injected provider failure"


class ProviderOutage(ServiceUnavailable):
    slug = "provider-outage"
    title = "Payment provider outage"


@dataclass(frozen=True)
class OutageWindow:
    start_s: float
    end_s: float

    @classmethod
    def parse(cls, text: str) -> OutageWindow:
        """`START-END` in seconds after start, e.g. `30-45`."""
        start, sep, end = text.partition("-")
        try:
            window = cls(float(start), float(end))
        except ValueError:
            window = cls(0, -1)
        if not sep or not 0 <= window.start_s < window.end_s:
            raise ValueError(f"outage window must be START-END seconds, START < END: {text!r}")
        return window


@dataclass
class Simulator:
    knobs: Knobs
    outages: Sequence[OutageWindow] = ()
    rng: random.Random = field(default_factory=random.Random)
    started_at: float = field(default_factory=time.monotonic)
    charges: dict[str, ChargeRead] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    _attempted: set[tuple[str, str]] = field(default_factory=set)
    _injected: int = 0

    def in_outage(self) -> bool:
        elapsed = time.monotonic() - self.started_at
        return self.knobs.outage or any(w.start_s <= elapsed < w.end_s for w in self.outages)

    async def admit(self, operation: str, key: str) -> FailurePoint | None:
        """Apply outage and latency to one charge or refund; where to inject a failure, if any."""
        self.stats.requests += 1
        if self.in_outage():
            self.stats.outage_rejections += 1
            if self.knobs.outage_mode == "hang":
                deadline = time.monotonic() + HANG_MAX_S
                # Polled: an outage ends by `/_control` or by its time window passing.
                while self.in_outage() and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(HANG_POLL_S)
            raise ProviderOutage("The payment provider is in an outage.")
        first_attempt = (operation, key) not in self._attempted
        self._attempted.add((operation, key))
        if self.knobs.first_attempt_only and not first_attempt:
            return None
        jitter = self.rng.uniform(-self.knobs.jitter_ms, self.knobs.jitter_ms)
        await asyncio.sleep(max(0.0, self.knobs.latency_ms + jitter) / 1000)
        if self.rng.random() >= self.knobs.failure_rate:
            return None
        if self.knobs.failure_point != "mixed":
            return self.knobs.failure_point
        self._injected += 1
        return "before" if self._injected % 2 else "after"

    def fail(self) -> InjectedFailure:
        self.stats.failures_injected += 1
        return InjectedFailure("Injected failure; the request may or may not have taken effect.")

    def record_charge(self, body: ChargeCreate) -> tuple[ChargeRead, bool]:
        """The charge under the key, created if new; True when it was created now."""
        charge = self.charges.get(body.idempotency_key)
        if charge is not None:
            if (charge.amount_minor, charge.currency) != (body.amount_minor, body.currency):
                self.stats.conflicts += 1
                raise Conflict("This idempotency key was used with another amount or currency.")
            self.stats.replays += 1
            return charge, False
        declined = self.rng.random() < self.knobs.decline_rate
        charge = ChargeRead(
            charge_id=f"ch_{uuid.uuid4().hex}",
            idempotency_key=body.idempotency_key,
            status="declined" if declined else "succeeded",
            amount_minor=body.amount_minor,
            currency=body.currency,
            created_at=datetime.now(UTC),
        )
        self.charges[body.idempotency_key] = charge
        self.stats.charges_created += 1
        self.stats.declines += declined
        return charge, True

    def record_refund(self, key: str) -> ChargeRead:
        charge = self.charges.get(key)
        if charge is None:
            raise NotFound("No charge under this idempotency key.")
        if charge.status == "declined":
            raise Conflict("A declined charge cannot be refunded.")
        if charge.status == "succeeded":
            charge.status = "refunded"
            charge.refunded_at = datetime.now(UTC)
            self.stats.refunds += 1
        return charge


def create_sim_app(sim: Simulator) -> FastAPI:
    app = FastAPI(title="Ticket-Rush payment provider simulator", version="0.1.0")
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware)

    @app.post("/charges", status_code=201, response_model=ChargeRead)
    async def create_charge(body: ChargeCreate, response: Response) -> ChargeRead:
        failure = await sim.admit("charge", body.idempotency_key)
        if failure == "before":
            raise sim.fail()
        charge, created = sim.record_charge(body)
        if failure == "after":
            raise sim.fail()
        if not created:
            response.status_code = 200
        return charge

    @app.post("/refunds", response_model=ChargeRead)
    async def create_refund(body: RefundCreate) -> ChargeRead:
        failure = await sim.admit("refund", body.idempotency_key)
        if failure == "before":
            raise sim.fail()
        charge = sim.record_refund(body.idempotency_key)
        if failure == "after":
            raise sim.fail()
        return charge

    @app.get("/charges/{idempotency_key}", response_model=ChargeRead)
    async def read_charge(
        idempotency_key: Annotated[str, Path(min_length=1, max_length=100)],
    ) -> ChargeRead:
        charge = sim.charges.get(idempotency_key)
        if charge is None:
            raise NotFound("No charge under this idempotency key.")
        return charge

    @app.get("/stats", response_model=Stats)
    async def read_stats() -> Stats:
        return sim.stats

    @app.get("/_control", response_model=Knobs)
    async def read_knobs() -> Knobs:
        return sim.knobs

    @app.post("/_control", response_model=Knobs)
    async def update_knobs(body: Knobs) -> Knobs:
        sim.knobs = sim.knobs.model_copy(update=body.model_dump(exclude_unset=True))
        return sim.knobs

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, media_type=content_type)

    return app


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def _parser(default_port: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.payments_sim",
        description=f"Fake payment provider. Fault flags default to {ENV_PREFIX}<FLAG> "
        "variables (e.g. TR_PAYMENTS_SIM_LATENCY_MS); --port to TR_PAYMENTS_PORT.",
    )
    parser.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=default_port, help="default TR_PAYMENTS_PORT")
    parser.add_argument("--latency-ms", type=float, default=_env("LATENCY_MS", "0"))
    parser.add_argument("--jitter-ms", type=float, default=_env("JITTER_MS", "0"))
    parser.add_argument("--failure-rate", type=float, default=_env("FAILURE_RATE", "0"))
    parser.add_argument("--decline-rate", type=float, default=_env("DECLINE_RATE", "0"))
    parser.add_argument(
        "--failure-point",
        choices=["mixed", "before", "after"],
        default=_env("FAILURE_POINT", "mixed"),
    )
    parser.add_argument(
        "--outage",
        action="append",
        metavar="START-END",
        help=f"outage window in seconds after start; repeatable ({ENV_PREFIX}OUTAGE: comma list)",
    )
    parser.add_argument(
        "--outage-mode", choices=["error", "hang"], default=_env("OUTAGE_MODE", "error")
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault dice")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    parser = _parser(settings.payments_port)
    args = parser.parse_args(argv)
    windows = args.outage or [w for w in _env("OUTAGE", "").split(",") if w.strip()]
    try:
        knobs = Knobs(
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            failure_rate=args.failure_rate,
            decline_rate=args.decline_rate,
            failure_point=args.failure_point,
            outage_mode=args.outage_mode,
        )
        outages = [OutageWindow.parse(w.strip()) for w in windows]
    except (ValidationError, ValueError) as exc:
        parser.error(str(exc))
    sim = Simulator(knobs=knobs, outages=outages, rng=random.Random(args.seed))  # noqa: S311 - fault dice
    configure_logging(settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_sim_app(sim),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        # Hung requests (outage_mode=hang) must not hold up a stop.
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
