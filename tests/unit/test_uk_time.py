"""Business dates are UK dates and people see UK local time, around both clock changes of 2027
(BST starts 28 March 01:00 UTC, ends 31 October 01:00 UTC). No I/O: the clock is controlled."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.runtime import clock
from services.runtime.reference import RateCard, load_framework

UTC = dt.UTC
SPRING = dt.datetime(2027, 3, 28, 1, 0, tzinfo=UTC)  # 01:00 GMT -> 02:00 BST
AUTUMN = dt.datetime(2027, 10, 31, 1, 0, tzinfo=UTC)  # 02:00 BST -> 01:00 GMT
HALF_PAST_MIDNIGHT_BST_1_APRIL = dt.datetime(2027, 3, 31, 23, 30, tzinfo=UTC)


def test_the_uk_date_of_an_instant_follows_bst_and_gmt():
    assert clock.uk_date(HALF_PAST_MIDNIGHT_BST_1_APRIL) == dt.date(2027, 4, 1)  # UTC says 31 March
    assert clock.uk_date(dt.datetime(2027, 3, 27, 23, 30, tzinfo=UTC)) == dt.date(2027, 3, 27)  # GMT: the same day
    assert clock.uk_date(SPRING - dt.timedelta(minutes=1)) == dt.date(2027, 3, 28)
    assert clock.uk_date(dt.datetime(2027, 10, 30, 23, 30, tzinfo=UTC)) == dt.date(2027, 10, 31)  # still BST
    assert clock.uk_date(dt.datetime(2027, 10, 31, 23, 30, tzinfo=UTC)) == dt.date(2027, 10, 31)  # GMT again
    with pytest.raises(ValueError):
        clock.uk_date(dt.datetime(2027, 4, 1, 0, 30))  # naive: no date in the UK


def test_uk_days_are_23_and_25_hours_long_on_the_clock_changes():
    def hours(day: dt.date) -> float:
        start, end = clock.uk_day_bounds(day)
        return (end - start).total_seconds() / 3600

    assert hours(dt.date(2027, 3, 28)) == 23 and hours(dt.date(2027, 10, 31)) == 25
    assert hours(dt.date(2027, 7, 1)) == 24
    assert clock.uk_day_start(dt.date(2027, 4, 1)) == dt.datetime(2027, 3, 31, 23, tzinfo=UTC)
    assert clock.uk_day_start(dt.date(2027, 12, 1)) == dt.datetime(2027, 12, 1, 0, tzinfo=UTC)


@given(st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2029, 1, 1), timezones=st.just(UTC)))
def test_every_instant_lies_within_the_bounds_of_its_uk_day(at):
    start, end = clock.uk_day_bounds(clock.uk_date(at))
    assert start <= at < end


def test_people_see_uk_local_time_with_bst_or_gmt():
    assert clock.format_uk(dt.datetime(2027, 7, 1, 12, 0, tzinfo=UTC)) == "01 Jul 2027 13:00 BST"
    assert clock.format_uk(dt.datetime(2027, 12, 1, 12, 0, tzinfo=UTC)) == "01 Dec 2027 12:00 GMT"
    assert clock.format_uk(HALF_PAST_MIDNIGHT_BST_1_APRIL) == "01 Apr 2027 00:30 BST"
    # The hour repeated in autumn is told apart by its zone.
    assert clock.format_uk(AUTUMN - dt.timedelta(minutes=30)) == "31 Oct 2027 01:30 BST"
    assert clock.format_uk(AUTUMN + dt.timedelta(minutes=30)) == "31 Oct 2027 01:30 GMT"
    assert clock.format_uk("2027-07-01T12:00:00+00:00") == "01 Jul 2027 13:00 BST"  # as the APIs return them
    assert clock.format_uk("2027-07-01T12:00:00") == "01 Jul 2027 13:00 BST"  # no offset: stored UTC
    assert clock.format_uk(None) == "-"


def test_a_period_typed_by_a_person_is_in_uk_time():
    assert clock.parse_uk_bound("2027-04-01") == dt.datetime(2027, 3, 31, 23, tzinfo=UTC)
    assert clock.parse_uk_bound("2027-11-01") == dt.datetime(2027, 11, 1, 0, tzinfo=UTC)
    assert clock.parse_uk_bound("2027-07-01T09:00") == dt.datetime(2027, 7, 1, 8, tzinfo=UTC)
    assert clock.parse_uk_bound("2027-07-01T09:00+00:00") == dt.datetime(2027, 7, 1, 9, tzinfo=UTC)
    with pytest.raises(ValueError):
        clock.parse_uk_bound("1 April")


def test_the_controlled_clock_is_the_platforms_clock_and_is_restored():
    before = clock.now()
    with clock.frozen(HALF_PAST_MIDNIGHT_BST_1_APRIL) as fixed:
        assert clock.now() == HALF_PAST_MIDNIGHT_BST_1_APRIL and clock.uk_today() == dt.date(2027, 4, 1)
        fixed.advance(hours=1)
        assert clock.now() == dt.datetime(2027, 4, 1, 0, 30, tzinfo=UTC)
    assert clock.now() >= before and clock.now() != dt.datetime(2027, 4, 1, 0, 30, tzinfo=UTC)


# ---- rate cards and policies ------------------------------------------------------------------


def with_april_2027_card():
    framework = load_framework()
    base = framework.rate_card_on(dt.date(2021, 4, 1))
    card = RateCard("2027-28", dt.date(2027, 4, 1), {b: r + Decimal("3.00") for b, r in base.rates.items()})
    return dataclasses.replace(framework, rate_cards=(*framework.rate_cards, card))


def test_the_card_effective_on_1_april_applies_from_uk_midnight():
    framework = with_april_2027_card()
    assert framework.rate_card_on(clock.uk_date(HALF_PAST_MIDNIGHT_BST_1_APRIL)).version == "2027-28"
    assert framework.rate_card_on(clock.uk_date(dt.datetime(2027, 3, 31, 22, 59, tzinfo=UTC))).version != "2027-28"


# ---- the HTTP edge's date checks ---------------------------------------------------------------


def test_a_start_recorded_at_half_past_midnight_bst_on_its_day_is_accepted():
    from services.brokerage.domain import DateLimits, start_refusal

    def refused(started_on: dt.date) -> str | None:
        refusal = start_refusal(started_on, clock.uk_today(), DateLimits())
        return refusal.code if refusal else None

    with clock.frozen(HALF_PAST_MIDNIGHT_BST_1_APRIL):
        assert refused(dt.date(2027, 4, 1)) is None
        assert refused(dt.date(2027, 4, 2)) == "date-in-future"
    # 23:30 GMT on 31 October: 1 November is tomorrow.
    with clock.frozen(AUTUMN + dt.timedelta(hours=22, minutes=30)):
        assert refused(dt.date(2027, 10, 31)) is None
        assert refused(dt.date(2027, 11, 1)) == "date-in-future"


# ---- what people are shown ---------------------------------------------------------------------


def test_the_console_filter_shows_uk_time_in_summer_and_winter():
    from services.console.api.pages import TEMPLATES

    when = TEMPLATES.env.filters["when"]
    assert when(dt.datetime(2027, 7, 1, 12, tzinfo=UTC)) == "01 Jul 2027 13:00 BST"
    assert when("2027-12-01T12:00:00+00:00") == "01 Dec 2027 12:00 GMT"
    assert when(None) == "-"
    assert TEMPLATES.env.filters["day"]("2027-04-01") == "Thursday 1 April 2027"


def test_every_console_template_shows_times_through_the_one_filter():
    """No template formats a timestamp by hand (slicing an ISO string, strftime, a "UTC" label)."""
    folder = Path(__file__).resolve().parents[2] / "services" / "console" / "templates"
    for template in folder.glob("*.html"):
        text = template.read_text()
        for pattern in ("_at[:", "strftime", "UTC"):
            assert pattern not in text, f"{template.name} formats a time by hand ({pattern})"


def test_an_offer_notification_gives_its_deadline_in_uk_time():
    from schemas.events import OfferMade
    from services.notifications import domain

    sample = json.loads((Path(__file__).resolve().parents[2] / "schemas/samples/OfferMade.v1.json").read_text())
    for closes, shown in (
        (dt.datetime(2027, 7, 1, 16, 0, tzinfo=UTC), "17:00 BST on Thursday 01 July 2027"),
        (dt.datetime(2027, 12, 1, 16, 0, tzinfo=UTC), "16:00 GMT on Wednesday 01 December 2027"),
    ):
        event = OfferMade.model_validate(sample | {"window_closes_at": closes.isoformat()})
        messages = domain.messages_for(event, provider_names={}, providers_url="http://p")
        assert messages and all(m.context["window_closes_at"] == shown for m in messages)


def test_the_explanation_gives_times_in_uk_time():
    from services.brokerage import explanation

    opened = dt.datetime(2027, 7, 1, 8, tzinfo=UTC)
    record: dict[str, Any] = {
        "policy": "open-framework",
        "rate_card": "2020-21",
        "band": "urban",
        "band_rate": "18.75",
        "status": "offered",
        "rounds": [
            {
                "offer_round": 1,
                "tier": "open",
                "offered": [],
                "answers": [],
                "excluded": {},
                "ranking": [],
                "outcome": None,
                "window_closes_at": opened + dt.timedelta(hours=4),
            }
        ],
    }
    assert "01 Jul 2027 13:00 BST" in explanation.for_broker(record, {})
    record["rounds"][0]["window_closes_at"] = dt.datetime(2027, 12, 1, 12, tzinfo=UTC)
    assert "01 Dec 2027 12:00 GMT" in explanation.for_broker(record, {})


# ---- KPI days and weeks ------------------------------------------------------------------------


def test_kpi_days_are_uk_days_around_both_clock_changes():
    from services.operations.kpis import compute

    samples = Path(__file__).resolve().parents[2] / "schemas" / "samples"
    base = json.loads((samples / "PackageRequested.v1.json").read_text())
    started = json.loads((samples / "PackageStarted.v1.json").read_text())
    instants = [
        HALF_PAST_MIDNIGHT_BST_1_APRIL,  # 1 April in the UK
        dt.datetime(2027, 3, 31, 22, 30, tzinfo=UTC),  # 23:30 BST, 31 March
        dt.datetime(2027, 3, 27, 23, 30, tzinfo=UTC),  # 23:30 GMT, 27 March
        dt.datetime(2027, 10, 30, 23, 30, tzinfo=UTC),  # 00:30 BST, 31 October
        dt.datetime(2027, 10, 31, 23, 30, tzinfo=UTC),  # 23:30 GMT, 31 October
    ]
    events = []
    for n, at in enumerate(instants):
        pid = str(uuid.UUID(int=n + 1))
        events.append(base | {"event_id": f"r{n}", "package_id": pid, "requested_at": at.isoformat()})
    events.append(started | {"event_id": "s1", "package_id": str(uuid.UUID(int=1)), "started_on": "2027-04-04"})
    events.append(started | {"event_id": "s2", "package_id": str(uuid.UUID(int=2)), "started_on": "2027-04-05"})
    result = compute(
        events,
        start=dt.datetime(2027, 1, 1, tzinfo=UTC),
        end=dt.datetime(2028, 1, 1, tzinfo=UTC),
        now=dt.datetime(2028, 1, 1, tzinfo=UTC),
        framework=load_framework(),
    )
    assert {d: v["requested"] for d, v in result["by_uk_day"].items()} == {
        "2027-03-27": 1,
        "2027-03-31": 1,
        "2027-04-01": 1,
        "2027-10-31": 2,
    }
    # Weeks run Monday to Sunday: Sunday 4 April is in the week of 29 March, Monday 5 April starts one.
    assert result["starts_by_uk_week"] == {"2027-03-29": 1, "2027-04-05": 1}


def test_the_simulators_days_are_uk_days():
    from services.simulator import simulation as simulator

    assert dt.datetime(2021, 3, 31, 23, tzinfo=UTC) == simulator.START  # midnight BST, 1 April 2021
    autumn = (dt.date(2021, 10, 31) - simulator.START_DAY).days
    assert simulator.day_hours(autumn + 1) - simulator.day_hours(autumn) == 25
    assert simulator.day_hours(1) == 24


@pytest.mark.parametrize("bound", ["0001-01-01", "9999-12-31", "9999-12-31T23:00", "1899-12-31"])
def test_a_period_bound_at_the_calendars_edge_is_refused_not_overflowed(bound):
    """A report's from/to at 0001-01-01 or 9999-12-31 was a 500 (date arithmetic overflowed): the
    bound is refused where it is read, and the reporting API answers 422 naming it."""
    with pytest.raises(ValueError, match="outside"):
        clock.parse_uk_bound(bound)
    from services.reporting import domain as reporting

    with pytest.raises(reporting.BadParameter):
        reporting.period(bound, None, zone=None, band=None, zones=(), now=clock.now(), default_days=84)
