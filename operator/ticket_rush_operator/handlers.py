"""kopf handlers reconciling ConcertSale resources.

Run: `kopf run --standalone --namespace=NS -m ticket_rush_operator.handlers`.
- create: make (or adopt) the sale in the app through its admin API and pin its initial rate;
  kopf adds the `ticketrush.io/sale-cleanup` finalizer because the delete handler must run.
- timer (every TR_OPERATOR_RECONCILE_INTERVAL_S): phase from the timeline, signals (sale stats
  from the API, consumer lag from Kafka, p95/error ratio from the Redis signal keys), the next
  admission rate from the shared control law, booking-consumer replicas, status and Events.
- delete: close the sale in the app, give back the consumers, then kopf drops the finalizer.
Everything is re-derived from the app, Kafka and the CR each time, so restarts and repeated
events are harmless. An unreachable app sets the Degraded condition and retries with backoff.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.redis import Keys
from app.queue.control import Aimd, Signals, Targets, next_rate
from app.queue.signals import read_signals
from ticket_rush_operator.appclient import AppRejected, AppUnavailable, SaleApi, http_session
from ticket_rush_operator.decisions import (
    Phase,
    Recommendation,
    condition_is,
    lag_target,
    phase_at,
    recommend_replicas,
    rfc3339,
    set_condition,
    stabilize,
)
from ticket_rush_operator.kafka import LagReader
from ticket_rush_operator.kube import Deployments, KubeUnavailable
from ticket_rush_operator.settings import OperatorSettings
from ticket_rush_operator.spec import SaleSpec

SETTINGS = OperatorSettings()
Logger = logging.Logger | logging.LoggerAdapter[Any]
RESOURCE = ("ticketrush.io", "v1", "concertsales")
FINALIZER = "ticketrush.io/sale-cleanup"


@dataclass
class Runtime:
    """Operator-wide clients, created at startup and shared by every sale's handlers."""

    settings: OperatorSettings
    http: aiohttp.ClientSession
    api: SaleApi
    redis: Redis
    keys: Keys
    lag: LagReader
    deployments: Deployments | None = None
    # Replicas each sale wants (by uid): they share one Deployment, which gets the highest.
    demand: dict[str, int] = field(default_factory=dict)


def _runtime(memo: kopf.Memo) -> Runtime:
    runtime: Runtime = memo["runtime"]
    return runtime


def _backoff(retry: int) -> float:
    return float(min(SETTINGS.retry_base_s * 2 ** min(retry, 16), SETTINGS.retry_max_s))


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    # Handler progress and the last-handled spec live in annotations: the CRD's structural
    # schema would prune kopf's own status fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ticketrush.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="ticketrush.io", key="last-handled-configuration"
    )
    # One namespace, given on the command line: the Role cannot (and need not) list namespaces.
    settings.scanning.disabled = True
    # Log lines below WARNING stay out of Events; the handlers post their own (kopf.event).
    settings.posting.level = logging.WARNING
    s = SETTINGS
    http = http_session(s.http_timeout_s)
    memo["runtime"] = Runtime(
        settings=s,
        http=http,
        api=SaleApi(
            http,
            base_url=s.api_url,
            email=s.admin_email,
            password=s.admin_password.get_secret_value(),
        ),
        redis=Redis.from_url(
            s.redis_url, socket_timeout=s.http_timeout_s, socket_connect_timeout=s.http_timeout_s
        ),
        keys=Keys(s.redis_prefix),
        lag=LagReader(
            s.kafka_bootstrap,
            topic=s.requests_topic,
            group=s.consumer_group,
            timeout_s=s.http_timeout_s,
        ),
    )


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo:
    """kopf's own service-account or kubeconfig login, kept for the Deployment client too."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is None:
        raise kopf.LoginError("Neither a service account nor a kubeconfig is available.")
    runtime = _runtime(memo)
    if runtime.deployments is not None:
        await runtime.deployments.close()
    runtime.deployments = Deployments(info, timeout_s=SETTINGS.http_timeout_s)
    return info


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    runtime = _runtime(memo)
    await runtime.http.close()
    await runtime.redis.aclose()
    await runtime.lag.close()
    if runtime.deployments is not None:
        await runtime.deployments.close()


def _warning(body: kopf.Body, *, reason: str, message: str) -> None:
    kopf.event(body, type="Warning", reason=reason, message=message)


def _degraded(
    status: kopf.Status, body: kopf.Body, patch: kopf.Patch, exc: Exception, now: datetime
) -> None:
    conditions = list(status.get("conditions") or [])
    if condition_is(conditions, "Degraded") is not True:
        _warning(body, reason="AppUnavailable", message=str(exc))
    conditions = set_condition(
        conditions,
        type_="Degraded",
        status=True,
        reason="AppUnavailable",
        message=str(exc),
        now=now,
    )
    patch.status["conditions"] = set_condition(
        conditions,
        type_="Ready",
        status=False,
        reason="AppUnavailable",
        message="The app's admin API does not answer; retrying with backoff.",
        now=now,
    )


@kopf.on.create(*RESOURCE, id="sale")
async def create_sale(
    spec: kopf.Spec,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    **_: Any,
) -> dict[str, Any]:
    """Create the concert's sale in the app (or adopt its live one) at the initial rate."""
    api = _runtime(memo).api
    sale = SaleSpec.of(spec)
    now = datetime.now(UTC)
    try:
        sale_id, adopted = await api.ensure_sale(sale.terms())
        if (await api.sale(sale_id))["status"] == "scheduled":
            await api.set_rate(sale_id, sale.initial_rate)
    except AppUnavailable as exc:
        _degraded(status, body, patch, exc, now)
        raise kopf.TemporaryError(f"The app is unavailable: {exc}", delay=_backoff(retry)) from exc
    except AppRejected as exc:
        patch.status["conditions"] = set_condition(
            list(status.get("conditions") or []),
            type_="Ready",
            status=False,
            reason="SaleRejected",
            message=str(exc),
            now=now,
        )
        _warning(body, reason="SaleRejected", message=str(exc))
        raise kopf.PermanentError(f"The app refused the sale: {exc}") from exc
    patch.status["saleId"] = sale_id
    verb = "Adopted" if adopted else "Created"
    kopf.event(
        body, type="Normal", reason=f"Sale{verb}", message=f"{verb} sale {sale_id} in the app."
    )
    return {"id": sale_id, "adopted": adopted}


# `backoff`: after an unexpected error, retry soon (kopf's default waits 60 s).
@kopf.timer(
    *RESOURCE,
    id="reconcile",
    interval=SETTINGS.reconcile_interval_s,
    backoff=SETTINGS.retry_base_s,
)
async def reconcile(
    spec: kopf.Spec,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    namespace: str | None,
    uid: str,
    logger: Logger,
    retry: int = 0,
    **_: Any,
) -> None:
    """One step: phase, signals, admission rate, consumer replicas, status."""
    assert namespace is not None  # ConcertSale is namespaced
    runtime = _runtime(memo)
    s = runtime.settings
    sale_id = status.get("saleId")
    if sale_id is None:
        return  # the create handler has not succeeded yet (it retries on its own)
    sale = SaleSpec.of(spec)
    now = datetime.now(UTC)
    previous: Phase | None = status.get("phase")
    conditions = list(status.get("conditions") or [])

    try:
        app_sale = await runtime.api.sale(sale_id)
        stats = await runtime.api.stats(sale_id)
        sold = await runtime.api.sold_seats(sale.concert_id)
    except AppUnavailable as exc:
        _degraded(status, body, patch, exc, now)
        raise kopf.TemporaryError(f"The app is unavailable: {exc}", delay=_backoff(retry)) from exc

    topic = await runtime.lag.read()
    lag = topic.lag if topic is not None else None
    partitions = topic.partitions if topic is not None else None
    try:
        downstream = await read_signals(runtime.redis, runtime.keys)
    except (RedisError, OSError) as exc:
        logger.warning("Redis signals unreadable: %r", exc)
        downstream = Signals()

    closed_in_app = app_sale["status"] == "closed"
    phase = phase_at(now, sale.timeline, previous=previous, sale_closed=closed_in_app, lag=lag)
    try:
        if phase == "Open" and app_sale["status"] == "scheduled":
            await runtime.api.open(sale_id)
        elif phase in ("Draining", "Closed") and not closed_in_app:
            await runtime.api.close(sale_id)
            closed_in_app = True

        rate = float(stats["current_rate"])
        action = status.get("lastDecision")
        if not closed_in_app:
            max_rate = min(sale.max_rate, float(app_sale["max_rate"]))
            min_rate = min(sale.min_rate, max_rate)
            wanted = min(sale.initial_rate, max_rate)
            if phase == "Open":
                decision = next_rate(
                    rate,
                    Signals(
                        consumer_lag=lag,
                        p95_ms=downstream.p95_ms,
                        error_ratio=downstream.error_ratio,
                    ),
                    targets=Targets(
                        consumer_lag=lag_target(sale.consumers, partitions),
                        p95_ms=s.target_p95_ms,
                        error_ratio=s.target_error_ratio,
                    ),
                    min_rate=min_rate,
                    max_rate=max_rate,
                    law=Aimd(increase=s.rate_increase * max_rate, decrease=s.rate_decrease),
                )
                # Hundredths of a fan/s are plenty, and keep the status readable.
                wanted = min(max(round(decision.rate, 2), min_rate), max_rate)
                action = decision.action
            if wanted != rate or stats["rate_mode"] != "manual":
                await runtime.api.set_rate(sale_id, wanted)
                rate = wanted
    except AppUnavailable as exc:
        _degraded(status, body, patch, exc, now)
        raise kopf.TemporaryError(f"The app is unavailable: {exc}", delay=_backoff(retry)) from exc
    except AppRejected as exc:  # e.g. closed by someone else between our reads: next step
        logger.warning("The app refused a sale step: %s", exc)

    replicas, history, conditions = await _scale_consumers(
        runtime, body, namespace, uid, sale, phase, lag, partitions, status, conditions, now
    )

    if condition_is(conditions, "Degraded") is True:
        kopf.event(body, type="Normal", reason="Recovered", message="The app answers again.")
    conditions = set_condition(
        conditions, type_="Degraded", status=False, reason="AppReachable", message="", now=now
    )
    conditions = set_condition(
        conditions,
        type_="LagMeasured",
        status=lag is not None,
        reason="Measured" if lag is not None else "KafkaUnavailable",
        # Without it the consumers hold their count and a closed sale stays Draining.
        message="" if lag is not None else f"Cannot read the lag of {s.requests_topic}.",
        now=now,
    )
    conditions = set_condition(
        conditions, type_="Ready", status=True, reason=phase, message="", now=now
    )
    if phase != previous:
        kopf.event(
            body, type="Normal", reason="PhaseChanged", message=f"{previous or 'New'} -> {phase}"
        )
    patch.status.update(
        {
            "phase": phase,
            "queueLength": int(stats["queue_length"]) + int(stats["pre_queue"]),
            "admittedTotal": int(stats["admitted_total"]),
            "currentRate": rate,
            "consumerReplicas": replicas,
            "consumerLag": lag,
            "soldSeats": sold,
            "lastDecision": action,
            "observedAt": rfc3339(now),
            "recommendations": [{"at": rfc3339(r.at), "replicas": r.replicas} for r in history],
            "conditions": conditions,
        }
    )


async def _scale_consumers(
    runtime: Runtime,
    body: kopf.Body,
    namespace: str,
    uid: str,
    sale: SaleSpec,
    phase: Phase,
    lag: int | None,
    partitions: int | None,
    status: kopf.Status,
    conditions: list[dict[str, Any]],
    now: datetime,
) -> tuple[int, list[Recommendation], list[dict[str, Any]]]:
    name = runtime.settings.consumer_deployment
    history = [
        Recommendation(at=datetime.fromisoformat(r["at"]), replicas=int(r["replicas"]))
        for r in status.get("recommendations") or []
    ]
    try:
        assert runtime.deployments is not None  # set by the login handler
        current = await runtime.deployments.replicas(namespace, name)
        recommended = recommend_replicas(
            phase, lag=lag, current=current, bounds=sale.consumers, partitions=partitions
        )
        wanted, history = stabilize(
            history, Recommendation(now, recommended), window_s=sale.stabilization_s
        )
        runtime.demand[uid] = wanted
        target = max(runtime.demand.values())
        if current is None:
            return (
                wanted,
                history,
                set_condition(
                    conditions,
                    type_="ConsumersScaled",
                    status=False,
                    reason="DeploymentNotFound",
                    message=f"No Deployment {name} in {namespace}.",
                    now=now,
                ),
            )
        if current != target:
            await runtime.deployments.scale(namespace, name, target)
            kopf.event(
                body,
                type="Normal",
                reason="ScaledConsumers",
                message=f"{name}: {current} -> {target} replicas (lag {lag}, partitions "
                f"{partitions}, phase {phase})",
            )
    except KubeUnavailable as exc:
        return (
            int(status.get("consumerReplicas") or 0),
            history,
            set_condition(
                conditions,
                type_="ConsumersScaled",
                status=False,
                reason="KubernetesUnavailable",
                message=str(exc),
                now=now,
            ),
        )
    return (
        wanted,
        history,
        set_condition(
            conditions,
            type_="ConsumersScaled",
            status=True,
            reason="Scaled",
            message=f"{name} at {target} replicas.",
            now=now,
        ),
    )


@kopf.on.delete(*RESOURCE, id="cleanup")
async def close_sale(
    spec: kopf.Spec,
    status: kopf.Status,
    body: kopf.Body,
    memo: kopf.Memo,
    namespace: str | None,
    uid: str,
    retry: int,
    logger: Logger,
    **_: Any,
) -> None:
    """Close the sale in the app and hand the consumers back to the remaining sales."""
    assert namespace is not None
    runtime = _runtime(memo)
    sale_id = status.get("saleId")
    if sale_id is not None:
        try:
            await runtime.api.close(sale_id)
        except AppUnavailable as exc:
            raise kopf.TemporaryError(
                f"The app is unavailable: {exc}", delay=_backoff(retry)
            ) from exc
        except AppRejected as exc:  # nothing more we can do for it: let the deletion finish
            logger.warning("The app refused to close sale %s: %s", sale_id, exc)
        kopf.event(
            body, type="Normal", reason="SaleClosed", message=f"Closed sale {sale_id} in the app."
        )
    runtime.demand.pop(uid, None)
    floor = SaleSpec.of(spec).consumers.minimum
    target = max(runtime.demand.values(), default=floor)
    name = runtime.settings.consumer_deployment
    try:
        assert runtime.deployments is not None
        current = await runtime.deployments.replicas(namespace, name)
        if current is not None and current != target:
            await runtime.deployments.scale(namespace, name, target)
    except KubeUnavailable as exc:
        logger.warning("Could not scale %s back: %s", name, exc)
