"""A ConcertSale's spec as typed values, with the CRD's defaults (the API server applies them
in a cluster; the operator does not rely on that)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ticket_rush_operator.appclient import SaleTerms
from ticket_rush_operator.decisions import ConsumerBounds, Timeline

DEFAULT_WARMUP_S = 300
DEFAULT_STABILIZATION_S = 60


def _moment(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class SaleSpec:
    concert_id: int
    timeline: Timeline
    initial_rate: float
    min_rate: float
    max_rate: float
    max_active: int
    consumers: ConsumerBounds
    stabilization_s: float

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> SaleSpec:
        admission, consumers = spec["admission"], spec["consumers"]
        return cls(
            concert_id=int(spec["concertId"]),
            timeline=Timeline(
                opens_at=_moment(spec["opensAt"]),
                closes_at=_moment(spec["closesAt"]),
                warmup_s=float(spec.get("warmupSeconds", DEFAULT_WARMUP_S)),
            ),
            initial_rate=float(admission["initialRate"]),
            min_rate=float(admission["minRate"]),
            max_rate=float(admission["maxRate"]),
            max_active=int(admission["maxActive"]),
            consumers=ConsumerBounds(
                minimum=int(consumers["min"]),
                maximum=int(consumers["max"]),
                target_lag_per_replica=int(consumers["targetLagPerReplica"]),
            ),
            stabilization_s=float(
                consumers.get("scaleDownStabilizationSeconds", DEFAULT_STABILIZATION_S)
            ),
        )

    def terms(self) -> SaleTerms:
        return SaleTerms(
            concert_id=self.concert_id,
            opens_at=self.timeline.opens_at,
            closes_at=self.timeline.closes_at,
            initial_rate=self.initial_rate,
            min_rate=self.min_rate,
            max_rate=self.max_rate,
            max_active=self.max_active,
        )
