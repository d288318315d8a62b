"""The pure rules of reviews (decision record 0088) and funding (decision record 0089): when a review
falls due (six weeks after the start, then yearly, in UK calendar dates), what a review outcome needs,
and funding splits that always make 100% and pennies that always add up to the cost."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.events import FundingPeriod, FundingShare
from services.brokerage import domain
from services.brokerage.domain import Period, ReviewSchedule

DEFAULT = ReviewSchedule()
LIMITS = domain.DateLimits()
days = st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2040, 12, 31))


@given(days)
def test_a_first_review_falls_due_six_weeks_after_care_started(started_on):
    due = domain.first_review_due(started_on, DEFAULT)
    assert due - started_on == dt.timedelta(weeks=6)
    assert due.weekday() == started_on.weekday()


@given(days)
def test_the_next_review_falls_due_a_calendar_year_after_a_review(reviewed_on):
    due = domain.next_review_due(reviewed_on, DEFAULT)
    assert (due.year, due.month) == (reviewed_on.year + 1, reviewed_on.month)
    # The same day of the month, or the month's last day when it has no such day (29 February).
    assert due.day == reviewed_on.day or (reviewed_on.day == 29 and reviewed_on.month == 2 and due.day == 28)
    assert 365 <= (due - reviewed_on).days <= 366


def test_uk_calendar_cases_of_the_review_dates():
    assert domain.next_review_due(dt.date(2028, 2, 29), DEFAULT) == dt.date(2029, 2, 28)
    assert domain.add_months(dt.date(2027, 1, 31), 1) == dt.date(2027, 2, 28)
    assert domain.add_months(dt.date(2027, 10, 31), 6) == dt.date(2028, 4, 30)
    # Started on the day the clocks go forward: the review is six calendar weeks on, a UK date.
    assert domain.first_review_due(dt.date(2027, 3, 28), DEFAULT) == dt.date(2027, 5, 9)
    assert domain.first_review_due(dt.date(2027, 1, 1), ReviewSchedule(first_after_days=28)) == dt.date(2027, 1, 29)
    assert domain.next_review_due(dt.date(2027, 1, 1), ReviewSchedule(interval_months=6)) == dt.date(2027, 7, 1)


@given(days, st.integers(min_value=-400, max_value=400))
def test_a_review_is_overdue_after_its_date_due_within_the_window_upcoming_before(due_on, offset):
    today = due_on + dt.timedelta(days=offset)
    state = domain.review_state(due_on, today, DEFAULT)
    if offset > 0:
        assert state == "overdue"
    elif offset >= -DEFAULT.due_soon_days:
        assert state == "due"
    else:
        assert state == "upcoming"


def refusal(**kw: Any) -> tuple[int, str] | None:
    today = dt.date(2027, 3, 1)
    base: dict[str, Any] = dict(
        status="started",
        outcome="no_change",
        started_on=dt.date(2027, 1, 1),
        reviewed_on=today,
        today=today,
        limits=LIMITS,
        has_change=False,
        has_ending=False,
        technology=[],
    )
    found = domain.review_refusal(**(base | kw))
    return None if found is None else (found.status, found.field)


def test_what_each_review_outcome_needs_and_who_may_be_reviewed():
    assert refusal() is None
    assert refusal(status="paused") is None
    for status in ("requested", "offered", "placed", "unplaced", "cancelled", "ended", "awaiting_approval"):
        assert refusal(status=status) == (409, "status"), status
    assert refusal(reviewed_on=dt.date(2027, 3, 2)) == (422, "reviewed_on")  # in the future
    assert refusal(reviewed_on=dt.date(2026, 12, 31)) == (422, "reviewed_on")  # before the care started
    assert refusal(outcome="changed") == (422, "change")
    assert refusal(outcome="changed", has_change=True) is None
    assert refusal(has_change=True) == (422, "change")
    assert refusal(outcome="ended") == (422, "end")
    assert refusal(outcome="ended", has_ending=True) is None
    assert refusal(has_ending=True) == (422, "end")
    tec = dict(outcome="technology_enabled_care", has_change=True, previous_hours=Decimal(7))
    assert refusal(**tec, changed_hours=Decimal("3.5")) == (422, "technology")
    assert refusal(**tec, changed_hours=Decimal("3.5"), technology=["telecare_alarm"]) is None
    assert refusal(**tec, changed_hours=Decimal(7), technology=["telecare_alarm"]) == (422, "change.hours_per_week")
    assert refusal(technology=["telecare_alarm"]) == (422, "technology")
    # A change awaiting the provider's answer: only an ending (which withdraws it) may be recorded.
    for outcome, extra in (("no_change", {}), ("changed", {"has_change": True})):
        assert refusal(outcome=outcome, change_pending=True, **extra) == (409, "change"), outcome
    assert refusal(outcome="ended", has_ending=True, change_pending=True) is None


# ---- funding ------------------------------------------------------------------------------------

FUNDERS = ["council", "nhs_discharge", "nhs_continuing_healthcare", "self_funder", "direct_payment"]


@st.composite
def split(draw) -> list[tuple[str, Decimal]]:
    """A joint split of 2-5 funders whose per cents add up to exactly 100."""
    funders = draw(st.lists(st.sampled_from(FUNDERS), min_size=2, max_size=5, unique=True))
    cuts = sorted(
        draw(st.lists(st.integers(1, 9999), min_size=len(funders) - 1, max_size=len(funders) - 1, unique=True))
    )
    bounds = [0, *cuts, 10000]
    return [(f, Decimal(hi - lo) / 100) for f, lo, hi in zip(funders, bounds, bounds[1:], strict=False)]


@given(split())
def test_a_split_adding_up_to_100_is_whole_and_the_contract_takes_it(shares):
    period = Period(dt.date(2027, 1, 1), "joint", tuple(shares))
    assert domain.funding_refusal([period], first_day=dt.date(2027, 1, 1)) is None
    FundingPeriod(
        effective_from=period.effective_from,
        funder="joint",
        shares=[FundingShare(funder=f, percent=p) for f, p in shares],
    )


@given(split(), st.data())
def test_a_split_not_adding_up_to_100_is_refused_naming_it_and_the_contract_refuses_it_too(shares, data):
    funder, percent = shares[0]
    delta = data.draw(
        st.decimals(min_value=Decimal("0.01") - percent, max_value=100 - percent, places=2).filter(lambda d: d != 0)
    )
    skewed = [(funder, percent + delta), *shares[1:]]
    total = sum(p for _, p in skewed)
    assert total != 100
    found = domain.funding_refusal([Period(dt.date(2027, 1, 1), "joint", tuple(skewed))], first_day=None)
    assert found is not None and (found.status, found.field) == (422, "periods.0.shares")
    assert f"{total.normalize():f}%" in found.message
    with pytest.raises(ValidationError):
        FundingPeriod(
            effective_from=dt.date(2027, 1, 1),
            funder="joint",
            shares=[FundingShare(funder=f, percent=p) for f, p in skewed],
        )


@given(st.decimals(min_value=Decimal(0), max_value=Decimal(10000), places=2), split())
def test_the_weekly_cost_splits_into_pennies_that_add_up_to_it_each_within_a_penny_of_its_share(amount, shares):
    parts = domain.split_pounds(amount, shares)
    assert sum(parts.values()) == amount
    for funder, percent in shares:
        assert abs(parts[funder] - amount * percent / 100) < Decimal("0.01")
        assert parts[funder] == parts[funder].quantize(Decimal("0.01"))


@given(
    st.decimals(min_value=Decimal("0.25"), max_value=Decimal(168), places=2),
    st.decimals(min_value=Decimal(10), max_value=Decimal(40), places=2),
    st.decimals(min_value=Decimal(10), max_value=Decimal(40), places=2),
    split(),
    st.sampled_from([None, "third_party", "person"]),
)
def test_the_funders_and_the_payer_above_the_band_rate_pay_the_whole_cost(hours, rate, band, shares, top_up):
    cost = domain.weekly_cost(
        hours_per_week=hours,
        hourly_rate=rate,
        band_rate=band,
        period=Period(dt.date(2027, 1, 1), "joint", tuple(shares)),
        top_up_paid_by=top_up,
    )
    assert sum(cost.by_funder.values()) + cost.above_band == cost.total == (hours * rate).quantize(Decimal("0.01"))
    if rate <= band:
        assert cost.above_band == 0 and cost.above_band_paid_by is None
    elif cost.above_band > 0:
        assert cost.above_band_paid_by == (top_up or "council")


def refused(periods: list[Period], first_day: dt.date | None = None) -> domain.Refusal:
    found = domain.funding_refusal(periods, first_day=first_day)
    assert found is not None
    return found


def test_the_period_in_force_and_the_funding_records_shape():
    nhs = Period(dt.date(2027, 1, 1), "nhs_discharge", (("nhs_discharge", Decimal(100)),))
    council = Period(dt.date(2027, 1, 29), "council", (("council", Decimal(100)),))
    assert domain.period_on([nhs, council], dt.date(2026, 12, 31)) is None
    assert domain.period_on([nhs, council], dt.date(2027, 1, 28)) is nhs
    assert domain.period_on([nhs, council], dt.date(2027, 1, 29)) is council
    assert domain.funding_refusal([nhs, council], first_day=dt.date(2027, 1, 1)) is None
    assert refused([council, nhs]).field == "periods.1.effective_from"
    assert refused([council], dt.date(2027, 1, 1)).field == "periods.0.effective_from"
    assert refused([]).field == "periods"
    twice = Period(dt.date(2027, 1, 1), "joint", (("council", Decimal(50)), ("council", Decimal(50))))
    assert "twice" in refused([twice]).message
    alone_split = Period(dt.date(2027, 1, 1), "council", (("council", Decimal(60)), ("nhs_discharge", Decimal(40))))
    assert refused([alone_split]).field == "periods.0.shares"


# ---- funding per call (decision record 0121) -----------------------------------------------------

CALL_FUNDERS = ["nhs_discharge", "nhs_continuing_healthcare", "self_funder", "direct_payment"]


@st.composite
def with_calls(draw) -> tuple[Period, int]:
    """A period (one funder, or a joint split) naming some - never all - of a pattern's daily calls."""
    calls_per_day = draw(st.integers(2, 6))
    joint = draw(st.booleans())
    shares = tuple(draw(split())) if joint else (("council", Decimal(100)),)
    named = draw(st.lists(st.integers(1, calls_per_day), min_size=1, max_size=calls_per_day - 1, unique=True))
    calls = tuple((c, draw(st.sampled_from(CALL_FUNDERS))) for c in named)
    return Period(dt.date(2027, 1, 1), "joint" if joint else "council", shares, calls), calls_per_day


@given(
    st.decimals(min_value=Decimal("0.25"), max_value=Decimal(168), places=2),
    st.decimals(min_value=Decimal(10), max_value=Decimal(40), places=2),
    st.decimals(min_value=Decimal(10), max_value=Decimal(40), places=2),
    with_calls(),
    st.sampled_from([None, "third_party"]),
)
def test_with_named_calls_the_split_is_still_the_whole_weekly_cost_and_100_per_cent(hours, rate, band, drawn, top_up):
    period, calls_per_day = drawn
    assert domain.funding_refusal([period], first_day=None, calls_per_day=calls_per_day) is None
    weights = domain.funder_weights(period, calls_per_day)
    assert sum(w.percent for w in weights) == 100
    cost = domain.weekly_cost(
        hours_per_week=hours,
        hourly_rate=rate,
        band_rate=band,
        period=period,
        top_up_paid_by=top_up,
        calls_per_day=calls_per_day,
    )
    at_band = cost.total - cost.above_band
    assert sum(cost.by_funder.values()) == at_band and cost.total == (hours * rate).quantize(Decimal("0.01"))
    # Each part is within a penny of its exact share; a named call is 1/calls_per_day of the week.
    for weight, pounds in cost.parts:
        assert abs(Fraction(pounds) - Fraction(at_band) * weight.percent / 100) < Fraction(1, 100)
        if weight.basis == "calls":
            assert weight.percent == Fraction(100 * len(weight.calls), calls_per_day)
    lines = domain.payer_lines(
        hours_per_week=hours,
        hourly_rate=rate,
        band_rate=band,
        period=period,
        top_up_paid_by=top_up,
        calls_per_day=calls_per_day,
    )
    assert sum(x.pounds_per_week for x in lines) == cost.total
    assert sum(x.percent for x in lines if x.percent is not None) == 100


def test_the_nhs_paying_the_first_of_three_calls_pays_a_third_of_the_week():
    period = Period(dt.date(2027, 1, 1), "council", (("council", Decimal(100)),), ((1, "nhs_discharge"),))
    cost = domain.weekly_cost(
        hours_per_week=Decimal("10.50"),
        hourly_rate=Decimal("20.00"),
        band_rate=Decimal("20.00"),
        period=period,
        top_up_paid_by=None,
        calls_per_day=3,
    )
    assert cost.by_funder == {"nhs_discharge": Decimal("70.00"), "council": Decimal("140.00")}


@pytest.mark.parametrize(
    ("calls", "funder", "field", "words"),
    [
        (((4, "nhs_discharge"),), "council", "periods.0.calls.0.call", "no call 4"),
        (((0, "nhs_discharge"),), "council", "periods.0.calls.0.call", "no call 0"),
        (((1, "nhs_discharge"), (1, "self_funder")), "council", "periods.0.calls.1.call", "named twice"),
        (((1, "joint"),), "council", "periods.0.calls.0.funder", "never joint"),
        (((2, "council"),), "council", "periods.0.calls.0.funder", "pays the period already"),
        (((1, "nhs_discharge"), (2, "nhs_discharge"), (3, "self_funder")), "council", "periods.0.calls", "every"),
    ],
)
def test_named_calls_must_be_calls_of_the_pattern_each_once_one_funder_and_not_all(calls, funder, field, words):
    period = Period(dt.date(2027, 1, 1), funder, ((funder, Decimal(100)),), calls)
    found = domain.funding_refusal([period], first_day=None, calls_per_day=3)
    assert found is not None and (found.status, found.field) == (422, field) and words in found.message


def test_a_change_that_drops_a_named_call_is_refused_until_the_funding_is_recorded_again():
    nhs_evening = Period(dt.date(2027, 1, 1), "council", (("council", Decimal(100)),), ((3, "nhs_discharge"),))
    found = domain.calls_left_unfunded([nhs_evening], 2)
    assert found is not None and (found.status, found.field) == (422, "visits.calls_per_day")
    assert domain.calls_left_unfunded([nhs_evening], 4) is None
    # Down to one call a day while call 1 is the NHS's: nothing would be left to the council.
    nhs_morning = dataclasses.replace(nhs_evening, calls=((1, "nhs_discharge"),))
    assert domain.calls_left_unfunded([nhs_morning], 1) is not None
    assert domain.calls_left_unfunded([nhs_morning], 2) is None


def test_the_contract_refuses_a_call_named_twice_or_paid_jointly():
    share = [FundingShare(funder="council", percent=Decimal(100))]
    with pytest.raises(ValidationError):
        FundingPeriod(
            effective_from=dt.date(2027, 1, 1),
            funder="council",
            shares=share,
            calls=[{"call": 1, "funder": "nhs_discharge"}, {"call": 1, "funder": "self_funder"}],
        )
    with pytest.raises(ValidationError):
        FundingPeriod(
            effective_from=dt.date(2027, 1, 1), funder="council", shares=share, calls=[{"call": 1, "funder": "joint"}]
        )
