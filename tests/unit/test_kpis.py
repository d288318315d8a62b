"""KPI definitions on hand-made event streams, with no I/O."""

import datetime as dt
import json
from pathlib import Path

import pytest

from services.operations.kpis import compute, percentile, rag
from services.runtime.reference import load_framework

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"
T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def sample(kind: str, n: int, **changes) -> dict:
    event = json.loads((SAMPLES / f"{kind}.v1.json").read_text())
    event["event_id"] = f"{kind}-{n}-{changes.pop('tag', '')}"
    event["package_id"] = f"pkg-{n}"
    return event | changes


def requested(n: int, zone="melton", band="rural", hours="10.00", urgency="community", minutes=0) -> dict:
    e = sample("PackageRequested", n, requested_at=(T0 + dt.timedelta(minutes=minutes)).isoformat())
    e["package"] = e["package"] | {"zone": zone, "band": band, "hours_per_week": hours, "urgency": urgency}
    return e


def placed(n: int, provider="a-care", zone="melton", band="rural", rate="22.95", hours="10.00", minutes=10) -> dict:
    return sample(
        "PackagePlaced",
        n,
        provider_id=provider,
        zone=zone,
        band=band,
        hourly_rate=rate,
        hours_per_week=hours,
        placed_at=(T0 + dt.timedelta(minutes=minutes)).isoformat(),
    )


def kpis(events):
    return compute(
        events,
        start=T0 - dt.timedelta(days=1),
        end=T0 + dt.timedelta(days=1),
        now=T0 + dt.timedelta(hours=2),
        framework=load_framework(),
        thresholds={"hhi": {"green": 2500, "amber": 4000, "better": "lower"}},
    )


def test_counts_time_to_place_spend_and_concentration():
    events = [
        requested(1),
        placed(1, provider="a-care", minutes=10),
        requested(2),
        placed(2, provider="b-care", minutes=30),
        requested(3),
        placed(3, provider="a-care", hours="20.00", minutes=20),
    ]
    k = kpis(events)
    assert k["packages"] | {"rag": None} == {
        "requested": 3,
        "placed": 3,
        "unplaced": 0,
        "cancelled": 0,
        "handed_back": 0,
        "awaiting_approval": 0,
        "unplaced_share": 0.0,
        "rag": None,
    }
    assert k["time_to_place"]["by_urgency"]["community"]["median_s"] == 1200
    assert k["weekly_spend_by_band"] == {"rural": "918.00"}  # 40 h x £22.95
    melton = k["concentration_by_zone"]["melton"]
    assert (
        melton["shares_percent"] == {"a-care": 75.0, "b-care": 25.0}
        and melton["hhi"] == 6250
        and melton["rag"] == "red"
    )


def test_a_republished_event_counts_once():
    event = requested(1)
    assert kpis([event, dict(event)])["packages"]["requested"] == 1


def test_the_unplaced_queue_holds_only_packages_unplaced_now():
    unplaced = [sample("PackageUnplaced", n, tag="1") for n in (1, 2, 3)]
    events = [
        requested(1),
        unplaced[0],  # still waiting
        requested(2),
        unplaced[1],
        sample("OfferMade", 2),
        placed(2),  # re-offered and placed
        requested(3),
        unplaced[2],
        sample("PackageCancelled", 3),
    ]  # cancelled from the queue
    k = kpis(events)
    assert [(q["zone"], q["packages"]) for q in k["unplaced_queue"]] == [("melton", 1)]
    assert k["unplaced_queue"][0]["longest_wait_s"] == 7200
    assert k["packages"]["cancelled"] == 1 and k["packages"]["unplaced"] == 1


def test_a_cancelled_placement_leaves_spend_and_concentration():
    k = kpis([requested(1), placed(1), sample("PackageCancelled", 1)])
    assert k["weekly_spend_by_band"] == {} and k["concentration_by_zone"] == {}


def test_declines_by_band_and_rurality_and_thin_zones():
    declined = sample("OfferDeclined", 1, reason="price")
    bid = sample("BidSubmitted", 1, provider_id="a-care")
    k = kpis([requested(1, zone="bottesford", band="isolated"), declined, bid])
    assert k["declines_by_band"] == {"isolated": {"price": 1}}
    assert k["declines_by_rurality"] == {"small_town": {"price": 1}}
    assert "bottesford" in k["zones_with_fewer_than_two_willing_providers"]["zones"]


@pytest.mark.parametrize(
    "value, rule, expected",
    [
        (1, {"green": 2, "amber": 5, "better": "lower"}, "green"),
        (4, {"green": 2, "amber": 5, "better": "lower"}, "amber"),
        (6, {"green": 2, "amber": 5, "better": "lower"}, "red"),
        (0.9, {"green": 0.95, "amber": 0.8, "better": "higher"}, "amber"),
        (None, {"green": 1, "amber": 2}, None),
    ],
)
def test_rag(value, rule, expected):
    assert rag(value, rule) == expected


def test_percentile_is_nearest_rank():
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9 and percentile([], 90) is None
