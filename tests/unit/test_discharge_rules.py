"""Hospital discharge rules (decision record 0097): the request's checks, the fallback's deadline in UK
time, reablement first, which in-house service takes a discharge, and the day count of the KPI."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.brokerage import domain
from services.runtime.reference import load_discharge

RULES = domain.DischargeRules()
TODAY = dt.date(2026, 3, 27)


def refusal(**kw: object) -> domain.Refusal | None:
    args: dict = dict(pathway=1, medically_fit_on=TODAY, start_date=TODAY, today=TODAY, rules=RULES) | kw
    return domain.discharge_refusal(**args)


def test_a_discharge_home_with_support_today_is_accepted():
    assert refusal() is None
    assert refusal(pathway=1, medically_fit_on=TODAY - dt.timedelta(days=2)) is None


def test_pathway_0_has_no_package_to_broker():
    r = refusal(pathway=0)
    assert r is not None and (r.status, r.field) == (422, "discharge.pathway")


@pytest.mark.parametrize("pathway", [0, 2, 3])
def test_only_pathway_1_is_home_care_the_others_are_refused_naming_their_route(pathway):
    """Decision record 0120: a rehabilitation bed (2) or a care home (3) is not home care."""
    r = refusal(pathway=pathway, pathway_route=("a care home", "the placements team's route"))
    assert r is not None and (r.status, r.field) == (422, "discharge.pathway")
    assert "not care at home" in r.message and "the placements team's route" in r.message


def test_the_shipped_reference_names_a_route_for_every_pathway():
    pathways = load_discharge().pathways
    assert sorted(pathways) == [0, 1, 2, 3] and all(p.route and p.means for p in pathways.values())


def test_a_medically_fit_date_beyond_the_limits_is_refused_naming_the_field():
    ahead = refusal(medically_fit_on=TODAY + dt.timedelta(days=15), start_date=TODAY + dt.timedelta(days=15))
    assert ahead is not None and ahead.field == "discharge.medically_fit_on" and "14 days ahead" in ahead.message
    assert refusal(medically_fit_on=TODAY + dt.timedelta(days=14), start_date=TODAY + dt.timedelta(days=14)) is None
    back = refusal(medically_fit_on=TODAY - dt.timedelta(days=29))
    assert back is not None and back.field == "discharge.medically_fit_on" and "28 days ago" in back.message


def test_care_cannot_start_before_the_person_is_medically_fit():
    r = refusal(medically_fit_on=TODAY + dt.timedelta(days=2), start_date=TODAY + dt.timedelta(days=1))
    assert r is not None and (r.status, r.field) == (422, "start_date")


def test_the_fallback_falls_due_at_noon_uk_time_on_day_1_across_the_clock_change():
    window = dt.timedelta(hours=2)
    early = dt.datetime(2026, 3, 28, 8, tzinfo=dt.UTC)
    # 29 March 2026 the clocks go forward: noon BST on the 30th is 11:00 UTC.
    due = domain.fallback_due_at(dt.date(2026, 3, 29), early, RULES, window)
    assert due == dt.datetime(2026, 3, 30, 11, tzinfo=dt.UTC)
    # In winter, noon GMT is noon UTC.
    assert domain.fallback_due_at(dt.date(2026, 1, 5), dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC), RULES, window) == (
        dt.datetime(2026, 1, 6, 12, tzinfo=dt.UTC)
    )


def test_a_late_request_still_gives_the_market_one_window():
    late = dt.datetime(2026, 1, 9, 9, tzinfo=dt.UTC)  # medically fit a week ago
    assert domain.fallback_due_at(dt.date(2026, 1, 2), late, RULES, dt.timedelta(hours=2)) == late + dt.timedelta(
        hours=2
    )


def test_reablement_first_only_on_pathway_1_with_reablement_potential():
    assert domain.reablement_first(1, True)
    assert not domain.reablement_first(1, False)
    assert not domain.reablement_first(2, True)


def loads(crisis: tuple[int, int], reablement: tuple[int, int]) -> list[domain.ServiceLoad]:
    return [
        domain.ServiceLoad("crisis_response", Decimal(crisis[0]), Decimal(crisis[1])),
        domain.ServiceLoad("reablement", Decimal(reablement[0]), Decimal(reablement[1])),
    ]


def test_the_first_service_with_room_takes_it_reablement_only_with_potential():
    assert domain.choose_service(loads((20, 0), (20, 0)), Decimal(14), reablement_potential=False) == "crisis_response"
    assert domain.choose_service(loads((20, 10), (20, 0)), Decimal(14), reablement_potential=True) == "reablement"
    assert domain.choose_service(loads((20, 10), (20, 0)), Decimal(14), reablement_potential=False) is None
    assert domain.choose_service(loads((20, 6), (20, 0)), Decimal(14), reablement_potential=False) == "crisis_response"
    assert domain.fallback_candidates(loads((1, 0), (1, 0)), reablement_potential=False) == ["crisis_response"]


@given(
    capacity=st.integers(0, 500),
    committed=st.integers(0, 600),
    hours=st.decimals(min_value=Decimal("0.25"), max_value=Decimal(168), places=2),
)
def test_a_service_is_never_chosen_beyond_its_capacity(capacity: int, committed: int, hours: Decimal):
    load = domain.ServiceLoad("crisis_response", Decimal(capacity), Decimal(committed))
    chosen = domain.choose_service([load], hours, reablement_potential=True)
    assert (chosen is not None) == (Decimal(committed) + hours <= Decimal(capacity))


@given(st.dates(dt.date(2025, 1, 1), dt.date(2030, 1, 1)), st.integers(-5, 30))
def test_the_kpi_day_counts_from_the_medically_fit_day_never_before_it(fit: dt.date, offset: int):
    today = fit + dt.timedelta(days=offset)
    day = domain.referral_day(today, fit)
    assert day >= fit and day >= today
    assert domain.days_after_medically_fit(day, fit) == max(offset, 0)


def test_the_shipped_reference_lists_hospitals_wards_and_both_services():
    reference = load_discharge()
    assert "W17" in reference.hospitals["uhl-lri"].wards
    assert [s.service for s in reference.in_house] == ["crisis_response", "reablement"]
    assert all(s.hours_per_week > 0 for s in reference.in_house)
