"""The operator's pure decisions: phases, KEDA-style replicas, HPA-style stabilization,
conditions. Properties checked with hypothesis."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from app.queue.control import Aimd, Signals, Targets, next_rate
from ticket_rush_operator.decisions import (
    PHASES,
    ConsumerBounds,
    Recommendation,
    Timeline,
    lag_replicas,
    lag_target,
    phase_at,
    recommend_replicas,
    set_condition,
    stabilize,
)
from ticket_rush_operator.spec import SaleSpec

T0 = datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
TIMELINE = Timeline(opens_at=T0, closes_at=T0 + timedelta(hours=2), warmup_s=300)

bounds_st = st.builds(
    lambda lo, extra, per: ConsumerBounds(
        minimum=lo, maximum=lo + extra, target_lag_per_replica=per
    ),
    st.integers(1, 20),
    st.integers(0, 20),
    st.integers(1, 10_000),
)
partitions_st = st.one_of(st.none(), st.integers(1, 64))
lag_st = st.one_of(st.none(), st.integers(0, 10**7))


def test_phases_follow_the_timeline() -> None:
    def at(offset_s: float, **kw: object) -> str:
        args = {"previous": None, "sale_closed": False, "lag": 0} | kw
        return phase_at(T0 + timedelta(seconds=offset_s), TIMELINE, **args)  # type: ignore[arg-type]

    assert at(-301) == "Scheduled"
    assert at(-300) == at(-1) == "Warming"
    assert at(0) == at(7199) == "Open"
    assert at(7200, lag=3) == "Draining"
    assert at(7200, lag=None) == "Draining"  # lag unknown: not known to be drained
    assert at(7200) == "Closed"
    assert at(10, sale_closed=True, lag=5) == "Draining"  # sold out / closed in the app
    assert at(-400, previous="Open") == "Open"  # never backwards


@given(
    st.lists(st.floats(-1000, 9000), min_size=2, max_size=20),
    lag_st,
    st.booleans(),
)
def test_phases_never_go_backwards_in_time(
    offsets: list[float], lag: int | None, closed: bool
) -> None:
    previous = None
    for offset in sorted(offsets):
        phase = phase_at(
            T0 + timedelta(seconds=offset), TIMELINE, previous=previous, sale_closed=closed, lag=lag
        )
        if previous is not None:
            assert PHASES.index(phase) >= PHASES.index(previous)
        # Without memory it is monotone too: the memory only guards against spec edits.
        bare = phase_at(
            T0 + timedelta(seconds=offset), TIMELINE, previous=None, sale_closed=closed, lag=lag
        )
        assert PHASES.index(bare) <= PHASES.index(phase)
        previous = phase


@given(st.integers(0, 10**7), bounds_st, partitions_st)
def test_lag_replicas_keda_formula_within_bounds_and_partitions(
    lag: int, bounds: ConsumerBounds, partitions: int | None
) -> None:
    n = lag_replicas(lag, bounds, partitions)
    assert 1 <= n <= bounds.maximum
    if partitions is not None:
        assert n <= partitions
    assert n >= min(bounds.minimum, partitions or bounds.minimum)
    keda = math.ceil(lag / bounds.target_lag_per_replica)
    if bounds.floor(partitions) <= keda <= bounds.ceiling(partitions):
        assert n == keda
    assert lag_replicas(lag + bounds.target_lag_per_replica, bounds, partitions) >= n  # monotone


def test_lag_replicas_examples() -> None:
    b = ConsumerBounds(minimum=1, maximum=8, target_lag_per_replica=100)
    assert lag_replicas(0, b, 4) == 1
    assert lag_replicas(101, b, 4) == 2
    assert lag_replicas(10_000, b, 4) == 4  # a consumer without a partition would idle
    assert lag_replicas(10_000, b, None) == 8
    assert lag_replicas(0, ConsumerBounds(minimum=6, maximum=8, target_lag_per_replica=1), 4) == 4


@given(
    st.sampled_from(PHASES),
    lag_st,
    st.one_of(st.none(), st.integers(0, 100)),
    bounds_st,
    partitions_st,
)
def test_recommendations_stay_within_floor_and_ceiling(
    phase: str, lag: int | None, current: int | None, bounds: ConsumerBounds, partitions: int | None
) -> None:
    n = recommend_replicas(phase, lag=lag, current=current, bounds=bounds, partitions=partitions)  # type: ignore[arg-type]
    if lag is None or partitions is None:  # broker unreadable: hold what runs (within bounds)
        held = current if current is not None else bounds.minimum
        assert n == min(max(held, bounds.minimum), bounds.maximum)
        return
    assert bounds.floor(partitions) <= n <= bounds.ceiling(partitions)
    if phase == "Warming":
        assert n == bounds.ceiling(partitions)  # pre-warmed for the opening spike
    elif phase in ("Scheduled", "Closed"):
        assert n == bounds.floor(partitions)
    else:
        assert n == lag_replicas(lag, bounds, partitions)


@given(
    st.lists(st.tuples(st.floats(0.01, 30), st.integers(1, 12)), min_size=1, max_size=60),
    st.floats(0, 60),
)
def test_stabilization_is_the_max_over_the_window_with_a_short_history(
    steps: list[tuple[float, int]], window: float
) -> None:
    history: list[Recommendation] = []
    everything: list[Recommendation] = []
    at = T0
    for gap, replicas in steps:
        at += timedelta(seconds=gap)
        new = Recommendation(at, replicas)
        everything.append(new)
        applied, history = stabilize(history, new, window_s=window)
        in_window = [r.replicas for r in everything if r.at > at - timedelta(seconds=window)]
        assert applied == max([*in_window, replicas])  # HPA: highest recent recommendation
        assert applied >= replicas  # scaling up is never delayed
        # Kept entries strictly decrease, so the history never outgrows the replica range.
        assert [r.replicas for r in history] == sorted({r.replicas for r in history}, reverse=True)
        assert len(history) <= 12


def test_stabilization_holds_then_scales_down() -> None:
    applied, h = stabilize([], Recommendation(T0, 4), window_s=60)
    assert applied == 4
    applied, h = stabilize(h, Recommendation(T0 + timedelta(seconds=30), 1), window_s=60)
    assert applied == 4  # within the window: hold
    applied, h = stabilize(h, Recommendation(T0 + timedelta(seconds=61), 1), window_s=60)
    assert applied == 1 and [r.replicas for r in h] == [1]


def test_condition_transition_time_moves_only_on_a_flip() -> None:
    c = set_condition(
        [], type_="Degraded", status=True, reason="AppUnavailable", message="x", now=T0
    )
    later = T0 + timedelta(seconds=5)
    same = set_condition(
        c, type_="Degraded", status=True, reason="AppUnavailable", message="y", now=later
    )
    assert same[0]["lastTransitionTime"] == c[0]["lastTransitionTime"] and same[0]["message"] == "y"
    flipped = set_condition(
        same, type_="Degraded", status=False, reason="AppReachable", message="", now=later
    )
    assert (
        flipped[0]["status"] == "False"
        and flipped[0]["lastTransitionTime"] != c[0]["lastTransitionTime"]
    )
    both = set_condition(flipped, type_="Ready", status=True, reason="Open", message="", now=later)
    assert [x["type"] for x in both] == ["Degraded", "Ready"]


@given(st.integers(0, 10**6), st.floats(1, 500), bounds_st, partitions_st)
def test_lag_past_what_the_consumers_absorb_never_raises_the_rate(
    lag: int, rate: float, bounds: ConsumerBounds, partitions: int | None
) -> None:
    target = lag_target(bounds, partitions)
    decision = next_rate(
        rate,
        Signals(consumer_lag=lag),
        targets=Targets(consumer_lag=target, p95_ms=800, error_ratio=0.05),
        min_rate=2,
        max_rate=500,
        law=Aimd(increase=25, decrease=0.7),
    )
    assert 2 <= decision.rate <= 500
    if lag > target:
        assert decision.action == "decrease" and decision.rate <= max(rate, 2)
    if lag <= 0.8 * target:
        assert decision.action == "increase"


def test_spec_defaults_match_the_crd() -> None:
    from tests.k8s.operator_fixtures import crd_schema

    spec_schema = crd_schema()["properties"]["spec"]["properties"]
    sale = SaleSpec.of(
        {
            "concertId": 7,
            "opensAt": "2026-12-24T18:00:00Z",
            "closesAt": "2026-12-24T20:00:00Z",
            "admission": {"initialRate": 50, "minRate": 5, "maxRate": 500, "maxActive": 1000},
            "consumers": {"min": 1, "max": 4, "targetLagPerReplica": 500},
        }
    )
    assert sale.timeline.warmup_s == spec_schema["warmupSeconds"]["default"]
    stab = spec_schema["consumers"]["properties"]["scaleDownStabilizationSeconds"]["default"]
    assert sale.stabilization_s == stab
    assert sale.timeline.opens_at == T0
