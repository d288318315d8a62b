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
