"""The reporting service's pure rules: periods in UK business dates, the exports' names, the
report assembled from the SQL's rows, and each topic's retention from the settings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from services.reporting import domain
from services.runtime.kafka import DAY_MS, topic_configs
from services.runtime.reference import load_framework
from services.runtime.settings import SharedSettings

NOW = dt.datetime(2027, 4, 10, 12, 0, tzinfo=dt.UTC)
ZONES = load_framework().zones


def period(start=None, end=None, zone=None, band=None) -> domain.Period:
    return domain.period(start, end, zone=zone, band=band, zones=ZONES, now=NOW)


def test_uk_dates_are_whole_uk_days_across_the_clock_change():
    # British Summer Time starts on 28 March 2027: that day has 23 hours.
    p = period("2027-03-28", "2027-03-28")
    assert p.start == dt.datetime(2027, 3, 28, 0, 0, tzinfo=dt.UTC)  # midnight GMT
    assert p.end == dt.datetime(2027, 3, 28, 23, 0, tzinfo=dt.UTC)  # midnight BST the next day
    summer = period("2027-04-01", "2027-04-02")
    assert summer.start == dt.datetime(2027, 3, 31, 23, 0, tzinfo=dt.UTC)
    assert summer.end - summer.start == dt.timedelta(days=2)


def test_instants_are_exact_and_the_defaults_are_the_last_seven_days():
    p = period("2027-04-01T09:30:00+01:00", "2027-04-02T00:00:00Z")
    assert (p.start, p.end) == (dt.datetime(2027, 4, 1, 8, 30, tzinfo=dt.UTC), dt.datetime(2027, 4, 2, tzinfo=dt.UTC))
    default = period()
    assert (default.start, default.end) == (NOW - dt.timedelta(days=7), NOW)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("yesterday", None), "from"),
        ((None, "2027-02-29"), "to"),  # not a leap year
        ((None, "2027-04-01T09:00"), "to"),  # no offset
        (("2027-04-05", "2027-04-01"), "from"),
    ],
)
def test_a_bad_period_names_its_field(args, field):
    with pytest.raises(domain.BadParameter) as raised:
        period(*args)
    assert raised.value.field == field


def test_filters_must_be_known():
    zone = sorted(ZONES)[0]
    assert period(zone=zone, band="rural").zone == zone
    with pytest.raises(domain.BadParameter, match="zone"):
        period(zone="atlantis")
    with pytest.raises(domain.BadParameter, match="band"):
        period(band="suburban")


def test_export_names():
    assert domain.export_of("packages.csv") == ("packages", "csv")
    assert domain.export_of("answers.parquet") == ("answers", "parquet")
    for name, field in (("inbox.csv", "table"), ("packages.json", "format"), ("packages", "format")):
        with pytest.raises(domain.BadParameter) as raised:
            domain.export_of(name)
        assert raised.value.field == field


NOTHING: dict[str, Any] = {
    "starts_in_period": [],
    "hand_backs_by_provider": [],
    "exceptions": {},
    "spend_in_care_by_band": [],
    "declines_by_week": [],
    "discharges": {"discharges": 0, "day_0_or_1": 0, "with_care": 0, "reablement": 0, "crisis_response": 0},
}
SPEND_RULE = {"spend_against_budget": {"green": 1.0, "amber": 1.1, "better": "lower"}}


def more(figures, budgets=None):
    return domain.more_measures(
        NOTHING | figures, framework=load_framework(), thresholds=SPEND_RULE, budgets=budgets or {}
    )


def test_more_measures_average_hours_per_person():
    m = more(
        {
            "in_care": {"people": 3, "hours": Decimal("31.50")},
            "starts_in_period": [{"week": dt.date(2027, 4, 5), "n": 2}],
            "hand_backs_by_provider": [{"provider_id": "a-care", "n": 1}],
            "exceptions": {"requested": 2, "approved": 1, "rejected": 0},
        }
    )
    assert m["in_care_at_end"] == {"people": 3, "hours_per_week": "31.50", "average_hours_per_person": "10.50"}
    assert m["starts_in_period_by_uk_week"] == {"2027-04-05": 2}
    assert more({"in_care": {"people": 0, "hours": None}})["in_care_at_end"]["average_hours_per_person"] is None


def test_the_discharge_measure_is_the_share_home_on_day_0_or_1_against_the_papers_baseline():
    """000:66-68: 65% leave on the day or the day after they become medically fit (decision 0097)."""
    rule = {"discharge_day_0_or_1_share": {"green": 0.65, "amber": 0.5, "better": "higher"}}
    row = {"discharges": 8, "day_0_or_1": 5, "with_care": 7, "reablement": 2, "crisis_response": 1}
    m = domain.discharge_measure(row, rule)
    assert m == {
        "discharges": 8,
        "home_on_day_0_or_1": 5,
        "share_day_0_or_1": 0.625,
        "baseline_share": 0.65,
        "with_care": 7,
        "still_waiting": 1,
        "referred_to_reablement": 2,
        "referred_to_crisis_response": 1,
        "rag": "amber",
    }
    assert domain.discharge_measure(row | {"day_0_or_1": 6}, rule)["rag"] == "green"
    none = domain.discharge_measure(NOTHING["discharges"], rule)
    assert none["share_day_0_or_1"] is None and none["rag"] is None
    assert more({"in_care": {"people": 0, "hours": None}})["hospital_discharge"]["discharges"] == 0


def test_spend_against_the_budget_per_band_with_its_rag():
    m = more(
        {
            "in_care": {"people": 2, "hours": Decimal(20)},
            "spend_in_care_by_band": [
                {"band": "rural", "spend": Decimal("1050.00")},
                {"band": "urban", "spend": Decimal("500.00")},
            ],
        },
        budgets={"weekly_budget_by_band": {"rural": 1000, "urban": 1000, "isolated": 200}},
    )["spend_against_budget"]
    assert m["rural"] == {"weekly_spend": "1050.00", "weekly_budget": "1000", "share": 1.05, "rag": "amber"}
    assert m["urban"]["rag"] == "green" and m["urban"]["share"] == 0.5
    assert m["isolated"] == {"weekly_spend": "0.00", "weekly_budget": "200", "share": 0.0, "rag": "green"}


def test_the_decline_mix_by_week_goes_by_band_and_rurality():
    zones = load_framework().zones
    zone = sorted(zones)[0]
    week = dt.date(2027, 4, 5)
    m = more(
        {
            "in_care": {"people": 0, "hours": None},
            "declines_by_week": [
                {"week": week, "band": "rural", "zone": zone, "reason": "geography", "n": 2},
                {"week": week, "band": "urban", "zone": zone, "reason": "geography", "n": 1},
                {"week": week, "band": "urban", "zone": "redrawn-away", "reason": "price", "n": 1},
            ],
        }
    )["declines_by_uk_week"]
    assert m["2027-04-05"]["by_band"] == {"rural": {"geography": 2}, "urban": {"geography": 1, "price": 1}}
    assert m["2027-04-05"]["by_rurality"] == {zones[zone].size: {"geography": 3}, "unknown": {"price": 1}}


def test_each_topic_has_an_explicit_retention():
    configs = topic_configs(SharedSettings(), namespace="")
    assert configs["brokerage.packages"]["retention.ms"] == str(2557 * DAY_MS)  # seven years by default
    assert configs["providers.answers"]["retention.ms"] == str(2557 * DAY_MS)
    assert configs["homecare.dead-letters"]["retention.ms"] == str(365 * DAY_MS)
    assert configs["providers.registry"] == {"cleanup.policy": "compact", "retention.ms": "-1"}
    shorter = topic_configs(SharedSettings(kafka_retention_packages_days=0.25, kafka_retention_answers_days=0), "x")
    assert shorter["x.brokerage.packages"]["retention.ms"] == str(6 * 3600 * 1000)
    assert shorter["x.providers.answers"]["retention.ms"] == "-1"  # 0: kept forever


def test_kpis_period_is_days_or_weeks_and_a_bad_one_names_the_option():
    import typer

    from services.cli.operations import _period_days

    assert (_period_days("365d"), _period_days("52w"), _period_days(" 7D ")) == (365, 364, 7)
    for bad in ("365", "0d", "-3d", "1y", "d", "1.5w"):
        with pytest.raises(typer.BadParameter, match=r"365d or 52w"):
            _period_days(bad)
