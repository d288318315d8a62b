"""The automatic adapter's answers, with no I/O."""

import datetime as dt
from decimal import Decimal

import pytest

from schemas.events import PackageSpec, ProviderProfile, VisitPattern
from schemas.vocabulary import DeclineReason
from services.providers import domain
from services.providers.domain import AutomaticRules, Bid, Decline, automatic_answer

TODAY = dt.date(2026, 11, 23)


def package(**kw):
    base = dict(
        zone="hinckley",
        band="urban",
        postcode_district="LE10",
        hours_per_week=Decimal("14"),
        visits=VisitPattern(calls_per_day=4, minutes_per_call=30, carers_per_call=1),
        needs=["personal_care"],
        urgency="community",
        start_date=TODAY,
    )
    return PackageSpec(**(base | kw))


def profile(**kw):
    base = dict(
        provider_id="fosse-care",
        name="Fosse",
        tier="prime",
        status="active",
        zones=["hinckley"],
        bands=["urban", "fringe", "rural"],
        skills=["personal_care", "medication"],
        double_handed=False,
        cqc_rating="good",
        local_risk="low",
        hand_backs_12m=0,
        weekly_capacity_hours=Decimal(40),
        committed_hours=Decimal(20),
    )
    return ProviderProfile(**(base | kw))


def answer(pkg=None, prof=None, rules=None, held=Decimal(0), rate=Decimal("18.75")):
    return automatic_answer(prof or profile(), rules or AutomaticRules(), pkg or package(), rate, held, TODAY)


def test_bids_at_the_framework_rate_when_everything_fits():
    assert answer() == Bid(Decimal("18.75"), TODAY)


def test_a_premium_for_the_band_raises_the_bid():
    rules = AutomaticRules(premium_percent={"rural": Decimal(5)})
    assert answer(package(band="rural"), rules=rules, rate=Decimal("22.95")).hourly_rate == Decimal("24.10")


def test_lead_time_moves_the_earliest_start():
    assert answer(rules=AutomaticRules(lead_days=3)).earliest_start == TODAY + dt.timedelta(days=3)


@pytest.mark.parametrize(
    "pkg, prof, rules, held, reason",
    [
        (package(zone="lutterworth"), None, None, Decimal(0), DeclineReason.geography),
        (package(band="isolated"), None, None, Decimal(0), DeclineReason.geography),
        (package(needs=["personal_care", "dementia"]), None, None, Decimal(0), DeclineReason.skills),
        (
            package(
                visits=VisitPattern(calls_per_day=1, minutes_per_call=60, carers_per_call=2), hours_per_week=Decimal(14)
            ),
            None,
            None,
            Decimal(0),
            DeclineReason.skills,
        ),
        (
            package(
                visits=VisitPattern(calls_per_day=5, minutes_per_call=24, carers_per_call=1), hours_per_week=Decimal(14)
            ),
            None,
            None,
            Decimal(0),
            DeclineReason.call_times,
        ),
        (None, None, AutomaticRules(max_package_hours=Decimal(10)), Decimal(0), DeclineReason.capacity),
        (None, None, None, Decimal(7), DeclineReason.capacity),  # 40 - 20 committed - 7 held < 14
        (None, profile(status="suspended"), None, Decimal(0), DeclineReason.other),
    ],
)
def test_declines_with_the_reason_code(pkg, prof, rules, held, reason):
    result = answer(pkg, prof, rules, held)
    assert isinstance(result, Decline) and result.reason == reason and result.text


def test_an_escalated_offer_from_a_neighbouring_zone_is_taken_only_by_a_provider_that_covers_neighbours():
    near = package(zone="lutterworth")  # next to hinckley, the provider's zone
    assert isinstance(answer(near), Decline)
    willing = automatic_answer(
        profile(),
        AutomaticRules(covers_adjacent_zones=True),
        near,
        Decimal("18.75"),
        Decimal(0),
        TODAY,
        neighbouring=frozenset({"hinckley", "south-leicestershire"}),
    )
    assert willing == Bid(Decimal("18.75"), TODAY)
    far = automatic_answer(
        profile(),
        AutomaticRules(covers_adjacent_zones=True),
        package(zone="bottesford"),
        Decimal("18.75"),
        Decimal(0),
        TODAY,
        neighbouring=frozenset({"melton"}),
    )
    assert isinstance(far, Decline) and far.reason == DeclineReason.geography


def test_suspension_comes_and_goes_but_leaving_the_framework_is_final():
    domain.check_status_change("p1", "active", "suspended")
    domain.check_status_change("p1", "suspended", "active")
    domain.check_status_change("p1", "suspended", "left")
    with pytest.raises(domain.StatusRefused, match="left the framework"):
        domain.check_status_change("p1", "left", "active")
    with pytest.raises(domain.StatusRefused, match="already suspended"):
        domain.check_status_change("p1", "suspended", "suspended")


def test_the_quality_registers_date_windows():
    """Decision 0157: the register's dates lie where such a date can be."""
    import datetime as dt

    from services.providers import domain

    today = dt.date(2028, 2, 29)
    assert domain.complaint_received_problem(dt.date(2022, 2, 28), today) is None
    assert "6 years" in (domain.complaint_received_problem(dt.date(2022, 2, 27), today) or "")
    assert "future" in (domain.complaint_received_problem(dt.date(2028, 3, 1), today) or "")
    assert domain.plan_due_problem(today + dt.timedelta(days=366), today) is None
    assert "a year ahead" in (domain.plan_due_problem(today + dt.timedelta(days=367), today) or "")
    assert "past" in (domain.plan_due_problem(today - dt.timedelta(days=1), today) or "")
    assert domain.cqc_publication_problem(dt.date(2014, 10, 1), today) is None
    assert "first ratings" in (domain.cqc_publication_problem(dt.date(2014, 9, 30), today) or "")
    assert "future" in (domain.cqc_publication_problem(dt.date(2028, 3, 1), today) or "")
