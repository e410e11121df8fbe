"""Pure decisions of the operator (no I/O): the phase a sale is in, how many booking consumers
it wants, the HPA-like stabilization of that number, and Kubernetes conditions.

Phases only move forward: Scheduled -> Warming (warmupSeconds before opensAt) -> Open ->
Draining (after closesAt, or once the app closed the sale, while booking requests are still
unconsumed) -> Closed (nothing left to consume).

Replicas follow KEDA's Kafka scaler: ceil(lag / targetLagPerReplica) within [min, max] and never
above the partition count (a consumer without a partition idles). Warming pre-scales to the
ceiling so the opening spike meets warm consumers. Like the HPA's scale-down stabilization
window, the applied count is the highest recommendation of the last `window` seconds: scale-up is
immediate, scale-down waits until every recent recommendation agrees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

Phase = Literal["Scheduled", "Warming", "Open", "Draining", "Closed"]
PHASES: tuple[Phase, ...] = ("Scheduled", "Warming", "Open", "Draining", "Closed")


@dataclass(frozen=True, slots=True)
class Timeline:
    opens_at: datetime
    closes_at: datetime
    warmup_s: float


@dataclass(frozen=True, slots=True)
class ConsumerBounds:
    minimum: int
    maximum: int
    target_lag_per_replica: int

    def ceiling(self, partitions: int | None) -> int:
        """The most replicas that can do work: max, and no more than the partitions."""
        top = self.maximum if partitions is None else min(self.maximum, partitions)
        return max(top, 1)

    def floor(self, partitions: int | None) -> int:
        return min(self.minimum, self.ceiling(partitions))


@dataclass(frozen=True, slots=True)
class Recommendation:
    at: datetime
    replicas: int


def phase_at(
    now: datetime,
    timeline: Timeline,
    *,
    previous: Phase | None,
    sale_closed: bool,
    lag: int | None,
) -> Phase:
    """The phase at `now`; never earlier than `previous`. Unknown lag keeps a sale Draining."""
    if sale_closed or now >= timeline.closes_at:
        current: Phase = "Closed" if lag == 0 else "Draining"
    elif now >= timeline.opens_at:
        current = "Open"
    elif now >= timeline.opens_at - timedelta(seconds=timeline.warmup_s):
        current = "Warming"
    else:
        current = "Scheduled"
    if previous is not None and PHASES.index(previous) > PHASES.index(current):
        return previous
    return current


def lag_replicas(lag: int, bounds: ConsumerBounds, partitions: int | None) -> int:
    """KEDA-style: ceil(lag / target per replica), within [min, max] and <= partitions."""
    wanted = math.ceil(max(lag, 0) / bounds.target_lag_per_replica)
    return min(max(wanted, bounds.floor(partitions)), bounds.ceiling(partitions))


def recommend_replicas(
    phase: Phase,
    *,
    lag: int | None,
    current: int | None,
    bounds: ConsumerBounds,
    partitions: int | None,
) -> int:
    """This sale's consumer recommendation right now (before stabilization). Without a
    measurement from the broker (lag and partitions None) the current count is held: growing
    could pass the unknown partition count, shrinking would be a guess."""
    if lag is None or partitions is None:
        held = current if current is not None else bounds.minimum
        return min(max(held, bounds.floor(None)), bounds.ceiling(None))
    if phase == "Warming":
        return bounds.ceiling(partitions)
    if phase in ("Scheduled", "Closed"):
        return bounds.floor(partitions)
    return lag_replicas(lag, bounds, partitions)


def stabilize(
    history: Iterable[Recommendation], new: Recommendation, *, window_s: float
) -> tuple[int, list[Recommendation]]:
    """The replicas to apply (the highest recommendation within the window) and the history to
    keep. A recommendation is dropped once it left the window or a later one is at least as
    high (that one dominates it for longer), so the history stays short."""
    since = new.at - timedelta(seconds=window_s)
    kept: list[Recommendation] = []
    for rec in sorted((r for r in history if r.at > since and r.at <= new.at), key=_at):
        while kept and kept[-1].replicas <= rec.replicas:
            kept.pop()
        kept.append(rec)
    while kept and kept[-1].replicas <= new.replicas:
        kept.pop()
    kept.append(new)
    return max(r.replicas for r in kept), kept


def _at(rec: Recommendation) -> datetime:
    return rec.at


def lag_target(bounds: ConsumerBounds, partitions: int | None) -> float:
    """The lag at which the consumers are saturated even at their ceiling: past it, the
    admission rate has to come down (below it, more consumers absorb the work)."""
    return float(bounds.target_lag_per_replica * bounds.ceiling(partitions))


def set_condition(
    conditions: Sequence[dict[str, Any]],
    *,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """Conditions with `type_` set; its lastTransitionTime moves only when the status flips."""
    value = "True" if status else "False"
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_:
            out.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != value
        out.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": rfc3339(now) if changed else cond.get("lastTransitionTime"),
            }
        )
    if not found:
        out.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": rfc3339(now),
            }
        )
    return out


def condition_is(conditions: Sequence[dict[str, Any]], type_: str) -> bool | None:
    for cond in conditions:
        if cond.get("type") == type_:
            return bool(cond.get("status") == "True")
    return None


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
