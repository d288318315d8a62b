"""The history generator (services/bench/history.py ``county_history``) at a small scale: every
event valid against its committed JSON Schema and parsed back by the consumers' parser, on its
home topic, each package's events in order, and the outcomes in plausible shares. The five-year
run belongs to ``homecare reporting bench``."""

from __future__ import annotations

import collections
import datetime as dt
import json
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]  # (installed with check-jsonschema; no stubs pinned)
import pytest

from schemas import topics
from schemas.events import Envelope, parse_event
from services.bench.history import county_history

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
YEARS = 0.25


@pytest.fixture(scope="module")
def events() -> list[Envelope]:
    return list(county_history(START, years=YEARS, packages_per_year=2400, seed=3))


def test_every_event_validates_against_its_schema_and_parses_back(events):
    validators: dict[str, jsonschema.Draft202012Validator] = {}
    for event in events:
        name = f"{event.event_type}.v{event.schema_version}.schema.json"
        if name not in validators:
            validators[name] = jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()))
        raw = event.model_dump_json()
        errors = [e.message for e in validators[name].iter_errors(json.loads(raw))]
        assert not errors, f"{event.event_type}: {errors[:3]}"
        assert parse_event(raw.encode()) == event
        assert topics.topic_for(event) in topics.EVENT_TOPICS
    assert len({e.event_id for e in events}) == len(events)


def test_each_package_begins_with_its_request_and_its_events_run_in_time_order(events):
    end = START + dt.timedelta(days=365.25 * YEARS)
    by_package: dict[object, list[Envelope]] = collections.defaultdict(list)
    for event in events:
        assert event.occurred_at < end
        if (package_id := getattr(event, "package_id", None)) is not None:
            by_package[package_id].append(event)
    assert len(by_package) == 600
    for package_events in by_package.values():
        assert package_events[0].event_type == "PackageRequested"  # type: ignore[attr-defined]
        times = [e.occurred_at for e in package_events]
        assert times == sorted(times)


def test_outcomes_come_in_plausible_shares(events):
    counts = collections.Counter(e.event_type for e in events)
    requested = counts["PackageRequested"]
    placed_once = len({e.package_id for e in events if e.event_type == "PackagePlaced"})
    assert 0.80 < placed_once / requested < 0.97
    assert 0.02 < counts["PackageUnplaced"] / requested < 0.15
    assert 0.01 < counts["PackageCancelled"] / requested < 0.08
    assert 0.03 < counts["ExceptionRequested"] / requested < 0.2
    assert counts["ExceptionDecided"] <= counts["ExceptionRequested"]
    for kind in ("PackageStarted", "PackagePaused", "PackageResumed", "PackageChanged", "PackageEnded"):
        assert counts[kind] > 0, kind
    assert counts["PackageHandedBack"] > 0 and counts["OfferMade"] > requested
    assert counts["ProviderUpdated"] > 10
    # Rural and isolated packages are declined more often than urban ones.
    band = {e.package_id: e.package.band for e in events if e.event_type == "PackageRequested"}
    answers = collections.Counter(
        (band[e.package_id], e.event_type) for e in events if e.event_type in ("OfferDeclined", "BidSubmitted")
    )

    def declined(b: str) -> float:
        return answers[(b, "OfferDeclined")] / (answers[(b, "OfferDeclined")] + answers[(b, "BidSubmitted")])

    assert declined("urban") < declined("rural")


def test_requests_are_spread_over_the_period_mostly_on_weekdays(events):
    requests = [e.requested_at for e in events if e.event_type == "PackageRequested"]
    months = collections.Counter((t.year, t.month) for t in requests)
    assert all(months[(2026, m)] > 150 for m in (1, 2, 3))  # the period: 5 January to 6 April
    weekdays = sum(t.weekday() < 5 for t in requests)
    assert weekdays / len(requests) > 0.85


def test_the_same_seed_gives_the_same_history_but_for_the_event_ids():
    def history(seed: int) -> list[tuple[str, object, dt.datetime]]:
        return [
            (e.event_type, getattr(e, "package_id", None), e.occurred_at)  # type: ignore[attr-defined]
            for e in county_history(START, years=0.02, packages_per_year=1000, seed=seed)
        ]

    assert history(5) == history(5) != history(6)
