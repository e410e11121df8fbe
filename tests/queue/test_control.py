"""The admission-rate control law: examples and properties (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.queue.control import Aimd, Signals, Targets, next_rate, pressure

TARGETS = Targets(consumer_lag=1000, p95_ms=500, error_ratio=0.05)
LAW = Aimd(increase=10, decrease=0.7)

signal = st.one_of(st.none(), st.floats(min_value=0, max_value=1e9, allow_nan=False))
any_signal = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
signals = st.builds(Signals, consumer_lag=signal, p95_ms=signal, error_ratio=signal)
rates = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def bounds(draw: st.DrawFn) -> tuple[float, float]:
    low = draw(st.floats(min_value=0.01, max_value=1e4))
    high = draw(st.floats(min_value=low, max_value=1e5))
    return low, high


@st.composite
def laws(draw: st.DrawFn) -> Aimd:
    return Aimd(
        increase=draw(st.floats(min_value=0.01, max_value=1e3)),
        decrease=draw(st.floats(min_value=0.05, max_value=0.95)),
        headroom=draw(st.floats(min_value=0.1, max_value=1.0)),
    )


def step(rate: float, s: Signals, low: float = 5, high: float = 500, law: Aimd = LAW) -> float:
    return next_rate(rate, s, targets=TARGETS, min_rate=low, max_rate=high, law=law).rate


def test_examples() -> None:
    assert step(100, Signals()) == 110  # nothing reported: healthy, additive increase
    assert step(100, Signals(consumer_lag=500)) == 110
    assert step(100, Signals(consumer_lag=900)) == 100  # within the hold band
    assert step(100, Signals(p95_ms=500)) == 100  # exactly at target: hold
    assert step(100, Signals(p95_ms=510)) == pytest.approx(100 * 0.7**1.02)
    assert step(100, Signals(error_ratio=0.5)) == pytest.approx(100 * 0.7**4)  # capped severity
    assert step(495, Signals()) == 500  # never above max
    assert step(6, Signals(consumer_lag=1e9)) == 5  # never below min
    assert step(math.nan, Signals()) == 15  # a broken reading restarts from min


def test_absent_and_unreadable_signals_count_as_healthy() -> None:
    assert pressure(Signals(), TARGETS) == 0
    assert pressure(Signals(consumer_lag=math.nan, p95_ms=-5), TARGETS) == 0


@given(rates, signals, bounds(), laws())
def test_always_within_bounds(
    rate: float, s: Signals, bound: tuple[float, float], law: Aimd
) -> None:
    low, high = bound
    assert low <= step(rate, s, low, high, law) <= high


@given(
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(Signals, consumer_lag=any_signal, p95_ms=any_signal, error_ratio=any_signal),
    bounds(),
)
def test_any_input_gives_a_bounded_finite_rate(
    rate: float, s: Signals, bound: tuple[float, float]
) -> None:
    low, high = bound
    result = step(rate, s, low, high)
    assert math.isfinite(result) and low <= result <= high


@given(rates, signals, signals, bounds(), laws())
def test_monotone_worse_signals_never_raise_the_rate(
    rate: float, a: Signals, b: Signals, bound: tuple[float, float], law: Aimd
) -> None:
    def worse(x: float | None, y: float | None) -> float | None:
        return max(x or 0, y or 0) if x is not None or y is not None else None

    low, high = bound
    w = Signals(
        consumer_lag=worse(a.consumer_lag, b.consumer_lag),
        p95_ms=worse(a.p95_ms, b.p95_ms),
        error_ratio=worse(a.error_ratio, b.error_ratio),
    )
    assert step(rate, w, low, high, law) <= step(rate, a, low, high, law)


@given(rates, signals, bounds(), laws())
def test_direction_follows_pressure(
    rate: float, s: Signals, bound: tuple[float, float], law: Aimd
) -> None:
    low, high = bound
    current = min(max(rate, low), high)
    decision = next_rate(rate, s, targets=TARGETS, min_rate=low, max_rate=high, law=law)
    if decision.pressure > 1:
        assert decision.action == "decrease" and decision.rate <= current
        assume(current > low * 1.0001)
        assert decision.rate < current
    elif decision.pressure <= law.headroom:
        assert decision.action == "increase" and decision.rate >= current
    else:
        assert decision.action == "hold" and decision.rate == current


@given(rates, bounds(), laws())
def test_sustained_overload_reaches_min_and_recovery_reaches_max(
    rate: float, bound: tuple[float, float], law: Aimd
) -> None:
    low, high = bound
    down = math.ceil(math.log(low / high) / math.log(law.decrease)) + 1
    r = rate
    for _ in range(down):
        r = step(r, Signals(consumer_lag=1.01 * TARGETS.consumer_lag), low, high, law)
    assert r == low
    up = math.ceil((high - low) / law.increase) + 1
    assume(up < 10_000)
    for _ in range(up):
        r = step(r, Signals(), low, high, law)
    assert r == high
