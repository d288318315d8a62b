"""The commissioners' reports' rules (services/reporting/domain.py), pure: the gap threshold, the
cherry-picking signal, the HHI of a zone's period and the trend of a provider's score."""

import datetime as dt
from decimal import Decimal

from services.reporting import domain
from services.runtime.reference import load_framework

FRAMEWORK = load_framework()
ZONES = sorted(FRAMEWORK.zones)


def test_a_zone_with_fewer_than_two_willing_providers_is_a_gap():
    willing = [{"zone": ZONES[0], "providers": ["a", "b"]}, {"zone": ZONES[1], "providers": ["a"]}]
    serving = [{"provider_id": "a", "zones": [ZONES[0], ZONES[1]]}, {"provider_id": "b", "zones": [ZONES[0]]}]
    report = domain.coverage_gaps_report(serving, willing, FRAMEWORK)
    assert report["zones"][ZONES[0]]["gap"] is False  # exactly two: enough (004:970)
    assert report["zones"][ZONES[1]]["gap"] is True
    assert report["zones"][ZONES[1]]["active_providers"] == ["a"]
    assert report["gaps"] == ZONES[1:]  # and every zone nobody bid in


def test_the_cherry_picking_signal_is_rural_less_town_decline_rate_in_points():
    by_band = {
        "urban": {"answers": 10, "declines": 1},
        "fringe": {"answers": 10, "declines": 1},
        "rural": {"answers": 4, "declines": 3},
        "isolated": {"answers": 1, "declines": 1},
    }
    assert domain.cherry_picking_signal(by_band) == 70.0  # 80% rural against 10% town
    assert domain.cherry_picking_signal({"urban": {"answers": 3, "declines": 0}}) is None


def test_market_share_is_of_hours_per_zone_and_period_with_its_hhi():
    week = dt.date(2027, 6, 7)
    rows = [
        {"zone": ZONES[0], "period": week, "provider_id": "a", "placements": 3, "hours": Decimal("30")},
        {"zone": ZONES[0], "period": week, "provider_id": "b", "placements": 1, "hours": Decimal("10")},
    ]
    [period] = domain.market_share_report(rows, FRAMEWORK)["zones"][ZONES[0]]
    assert period["hhi"] == 75**2 + 25**2 and period["placements"] == 4
    assert [(p["provider_id"], p["share_percent"]) for p in period["providers"]] == [("a", 75.0), ("b", 25.0)]


def test_a_providers_trend_compares_its_score_now_with_the_start_of_the_period():
    start = dt.datetime(2027, 6, 7, tzinfo=dt.UTC)

    def row(pid, score, risk, days):
        return {
            "provider_id": pid, "name": pid, "status": "active", "change": "cqc_rating", "cqc_rating": "good",
            "cqc_inspected_on": None, "local_risk": risk, "quality_score": Decimal(score), "hand_backs_12m": 0,
            "late_starts_12m": 0, "open_complaints": 0, "open_improvement_plans": 0,
            "recorded_at": start + dt.timedelta(days=days),
        }  # fmt: skip

    rows = [row("a", "85.0", "low", -3), row("a", "90.0", "low", 2), row("b", "40.0", "high", 1)]
    report = domain.provider_quality_report(rows, start)["providers"]
    assert [(p["provider_id"], p["trend"]) for p in report] == [("b", "new"), ("a", "up")]  # highest risk first


# ---- the weekly commitment by provider and funder (decision 0118) -------------------------


def test_a_commitment_covers_every_uk_week_the_period_touches():
    # 2027-03-28 is the Sunday the clocks go forward; the period ends at the UK midnight after 04-05.
    p = domain.period("2027-03-28", "2027-04-05", zone=None, band=None, zones=(), now=dt.datetime.now(dt.UTC))
    assert domain.commitment_weeks(p) == (dt.date(2027, 3, 22), dt.date(2027, 4, 5))
    report = domain.commitment_report([], *domain.commitment_weeks(p))
    assert [w["week_commencing"] for w in report["weeks"]] == [dt.date(2027, 3, d) for d in (22, 29)] + [
        dt.date(2027, 4, 5)
    ]
    assert report["weeks"][0]["rows"] == [] and report["weeks"][0]["total"] == "0.00"


def test_a_commitment_of_more_than_ten_years_is_refused_naming_from():
    p = domain.period("2001-01-01", "2027-01-01", zone=None, band=None, zones=(), now=dt.datetime.now(dt.UTC))
    try:
        domain.commitment_weeks(p)
    except domain.BadParameter as exc:
        assert exc.field == "from"
    else:
        raise AssertionError("26 years of weeks in one answer")


def test_pounds_are_rounded_once_half_up_and_totals_add_the_rounded_rows():
    week = dt.date(2027, 5, 3)
    rows = [
        # 3 days of 100.01 a week: 300.03 / 7 = 42.861428... -> 42.86
        {"week": week, "provider_id": "p1", "provider_name": "P1", "payer": "council", "agreements": 1,
         "pound_days": Decimal("300.03"), "hour_days": Decimal("30")},
        # 1 day of 0.35 a week: 0.05
        {"week": week, "provider_id": "p1", "provider_name": "P1", "payer": "nhs_discharge", "agreements": 1,
         "pound_days": Decimal("0.35"), "hour_days": Decimal("0.07")},
    ]  # fmt: skip
    [w] = domain.commitment_report(rows, week, week)["weeks"]
    assert [r["pounds"] for r in w["rows"]] == ["42.86", "0.05"]
    assert [r["hours_per_week"] for r in w["rows"]] == ["4.29", "0.01"]
    assert w["total"] == "42.91" and w["by_provider"]["p1"] == {
        "pounds": "42.91",
        "hours_per_week": "4.30",
        "agreements": 1,
    }
    assert w["by_payer"] == {"council": "42.86", "nhs_discharge": "0.05"}
