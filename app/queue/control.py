"""The admission-rate control law: AIMD with a hold band, bounded to [min_rate, max_rate].

Pure (no I/O, no app imports) so the admission worker and the Kubernetes operator share it.

Pressure is the worst ratio of a measured signal to its target (consumer lag, booking p95
latency, booking error ratio); a signal that is absent counts as healthy. Then:
- pressure > 1 (overloaded): multiply the rate by `decrease ** min(pressure, max_severity)`, so
  a mild overload backs off like classic AIMD and a severe one backs off harder in one step;
- headroom < pressure <= 1: hold (a dead band, so the rate does not oscillate around a target);
- pressure <= headroom (healthy): add `increase` fans/s.
The result is always clamped to the bounds. It is monotone: worse signals never give a higher
rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Action = Literal["increase", "hold", "decrease"]


@dataclass(frozen=True, slots=True)
class Signals:
    """Measured downstream health; None means not reported (treated as healthy)."""

    consumer_lag: float | None = None
    p95_ms: float | None = None
    error_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class Targets:
    """The level of each signal at which the downstream counts as saturated (all > 0)."""

    consumer_lag: float
    p95_ms: float
    error_ratio: float


@dataclass(frozen=True, slots=True)
class Aimd:
    increase: float  # fans/s added per step when healthy (> 0)
    decrease: float  # multiplicative factor per unit of overload, in (0, 1)
    headroom: float = 0.8  # below this fraction of every target the system counts as healthy
    max_severity: float = 4.0  # caps the exponent: one step never cuts below decrease**4


@dataclass(frozen=True, slots=True)
class RateDecision:
    rate: float
    action: Action
    pressure: float


def _ratio(value: float | None, target: float) -> float:
    if value is None or math.isnan(value):
        return 0.0
    return max(0.0, value) / target


def pressure(signals: Signals, targets: Targets) -> float:
    """The worst signal relative to its target: 0 healthy/unknown, 1 at target, >1 overloaded."""
    return max(
        _ratio(signals.consumer_lag, targets.consumer_lag),
        _ratio(signals.p95_ms, targets.p95_ms),
        _ratio(signals.error_ratio, targets.error_ratio),
    )


def next_rate(
    rate: float,
    signals: Signals,
    *,
    targets: Targets,
    min_rate: float,
    max_rate: float,
    law: Aimd,
) -> RateDecision:
    """One control step from `rate` (fans/s) given the latest signals."""
    current = min(max(rate, min_rate), max_rate) if math.isfinite(rate) else min_rate
    p = pressure(signals, targets)
    if p > 1.0:
        # p is finite here unless a signal is +inf, which the cap turns into the hardest step.
        proposed = current * law.decrease ** min(p, law.max_severity)
        action: Action = "decrease"
    elif p > law.headroom:
        proposed, action = current, "hold"
    else:
        proposed, action = current + law.increase, "increase"
    return RateDecision(rate=min(max(proposed, min_rate), max_rate), action=action, pressure=p)
