"""The pure rules of changes to a running package (decision record 0082): who may be changed, a
reduction only when discussed with the person or family, hours matching the visit pattern, the
automatic adapter's answer, and committed hours staying the live placements' current hours."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from schemas.events import PackageSpec, ProviderProfile, VisitPattern
from services.brokerage import domain, repository
from services.providers import domain as providers_domain
from tests.unit.test_pauses_and_endings_rules import LIMITS, STATUSES, TODAY

visits = st.builds(
    VisitPattern,
    calls_per_day=st.integers(1, 6),
    minutes_per_call=st.sampled_from([15, 30, 45, 60, 90]),
    carers_per_call=st.integers(1, 2),
    days_per_week=st.integers(1, 7),
)


def spec(pattern: VisitPattern, needs=("personal_care",)) -> PackageSpec:
    return PackageSpec(
        zone="charnwood-north",
        band="urban",
        postcode_district="LE11",
        hours_per_week=pattern.care_hours_per_week,
        visits=pattern,
        needs=list(needs),
        urgency="community",
        start_date=TODAY,
    )


def refusal(previous, changed, *, status="started", pending=False, discussed=None, on=TODAY):
    return domain.change_refusal(
        status=status,
        change_pending=pending,
        started_on=TODAY - dt.timedelta(days=10),
        previous=previous,
        changed=changed,
        discussed_with_person=discussed,
        effective_date=on,
        today=TODAY,
        limits=LIMITS,
    )


@given(before=visits, after=visits, discussed=st.sampled_from([None, False, True]))
def test_a_reduction_is_refused_unless_discussed_and_an_increase_needs_no_discussion(before, after, discussed):
    previous, changed = spec(before), spec(after)
    result = refusal(previous, changed, discussed=discussed)
    if changed == previous:
        assert result is not None and result.field == "visits"
    elif changed.hours_per_week < previous.hours_per_week and not discussed:
        assert result is not None and (result.status, result.field) == (422, "discussed_with_person")
    else:
        assert result is None


@given(status=st.sampled_from(STATUSES), pattern=visits)
def test_only_a_started_package_with_no_change_pending_may_change(status, pattern):
    previous = spec(VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1))
    changed = spec(pattern)
    if changed == previous:
        return
    result = refusal(previous, changed, status=status, discussed=True)
    if status != "started":
        assert result is not None and (result.status, result.field) == (409, "status")
    else:
        assert result is None
        pending = refusal(previous, changed, pending=True, discussed=True)
        assert pending is not None and (pending.status, pending.field) == (409, "change")


@given(pattern=visits, off=st.decimals(min_value=-50, max_value=50, places=2))
def test_hours_must_match_the_visit_pattern(pattern, off):
    previous = spec(VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1))
    hours = pattern.care_hours_per_week + off
    if not Decimal(0) < hours <= 168:
        return
    changed = spec(pattern).model_copy(update={"hours_per_week": hours})
    result = refusal(previous, changed, discussed=True)
    within = abs(off) <= max(Decimal("0.5"), pattern.care_hours_per_week * Decimal("0.1"))
    assert (result is not None and result.field == "hours_per_week") is not within


def test_the_effective_date_is_a_uk_date_within_the_limits_and_not_before_the_start():
    previous = spec(VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1))
    changed = spec(VisitPattern(calls_per_day=3, minutes_per_call=30, carers_per_call=1))
    for days in (-11, -29, 91):
        result = refusal(previous, changed, on=TODAY + dt.timedelta(days=days))
        assert result is not None and result.field == "effective_date", days
    assert refusal(previous, changed, on=TODAY + dt.timedelta(days=14)) is None


def test_the_change_window_timer_is_about_pending_changes_only():
    assert repository.CHANGE_WINDOWS.due == "pending_change_id IS NOT NULL"
    assert domain.ALLOWED_FROM["change"] == frozenset({"started"})


PROFILE = ProviderProfile(
    provider_id="p1",
    name="p1",
    tier="prime",
    status="active",
    zones=["charnwood-north"],
    bands=["urban"],
    skills=["personal_care"],
    double_handed=True,
    cqc_rating="good",
    local_risk="low",
    hand_backs_12m=0,
    weekly_capacity_hours=Decimal(100),
    committed_hours=Decimal(90),
)


@given(before=visits, after=visits, held=st.integers(0, 10))
def test_an_automatic_adapter_takes_a_reduction_always_and_an_increase_only_with_room(before, after, held):
    rules = providers_domain.AutomaticRules(max_package_hours=Decimal(168), max_calls_per_day=6)
    previous, changed = spec(before), spec(after)
    answer = providers_domain.automatic_change_answer(PROFILE, rules, changed, previous.hours_per_week, Decimal(held))
    extra = changed.hours_per_week - previous.hours_per_week
    if extra <= 0:
        assert answer is None
    else:
        assert (answer is None) is (extra <= 10 - held)


change = st.tuples(st.integers(0, 2), st.sampled_from(["accept", "decline", "stale", "replace"]), visits)


@given(script=st.lists(change, max_size=30))
def test_committed_hours_are_the_live_placements_current_hours_after_any_changes(script):
    """Three packages held by providers A and B; changes accepted (the committed hours move by the
    difference), declined (nothing moves until a new provider's award replaces the placement), or
    stale (made for other hours: nothing moves)."""
    placements = {n: ("A", Decimal(7)) for n in range(3)}
    committed = {"A": Decimal(21), "B": Decimal(0)}
    for n, kind, pattern in script:
        holder, hours = placements[n]
        new = pattern.care_hours_per_week
        if kind == "accept":
            committed[holder] = providers_domain.committed_after_change(committed[holder], hours, hours, new)
            placements[n] = (holder, new)
        elif kind == "stale":
            committed[holder] = providers_domain.committed_after_change(committed[holder], hours, hours + 1, new)
        elif kind == "replace":  # declined, re-brokered, the new award replaces the old placement
            other = "B" if holder == "A" else "A"
            committed[holder] -= hours
            committed[other] += new
            placements[n] = (other, new)
        for p in ("A", "B"):
            assert committed[p] == sum(h for who, h in placements.values() if who == p)
