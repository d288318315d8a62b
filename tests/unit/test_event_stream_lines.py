"""The operations' event stream (``homecare events tail``, the console's live stream): one line a
record, with no price in it - operations follows the work, never prices (found by an attack: the
console's live stream showed every bid's rate as it came)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from services.operations.streams import TYPE_WIDTH, describe

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"


def record(value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topic="brokerage.packages",
        partition=0,
        offset=0,
        timestamp=1_764_756_000_000,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_no_line_names_a_price(sample):
    event = json.loads(sample.read_text())
    line = describe(record(sample.read_bytes()))
    assert line.event_type == event["event_type"]
    assert "£" not in line.outcome
    for key in ("hourly_rate", "band_rate"):
        if event.get(key):
            assert str(event[key]) not in " ".join(str(v) for v in vars(line).values()), (key, line)


def test_a_bid_and_a_placement_still_say_what_happened():
    bid = json.loads(next(SAMPLES.glob("BidSubmitted.v*.json")).read_text())
    assert describe(record(json.dumps(bid).encode())).outcome == f"bid, can start {bid['earliest_start']}"
    placed = json.loads(sorted(SAMPLES.glob("PackagePlaced.v*.json"))[-1].read_text())
    assert describe(record(json.dumps(placed).encode())).outcome == f"placed ({placed['tier']} tier)"


@pytest.mark.parametrize("sample", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_event_type_says_what_happened_in_lines_whose_columns_line_up(sample):
    """Found by a new user: the package's life after placement (discharges, funding, agreements) had
    empty summaries, and their longer names pushed the columns out of line."""
    line = describe(record(sample.read_bytes()))
    assert line.outcome, sample.name
    assert "None" not in line.outcome, (sample.name, line.outcome)  # every field it names is the event's
    rendered = line.render()
    event_column = rendered.split("  ", 1)[1]
    assert event_column[: len(TYPE_WIDTH * " ")].rstrip() == line.event_type
    assert event_column[TYPE_WIDTH] == " "


@pytest.mark.parametrize(
    "value",
    [
        {"event_type": "PlacementConfirmed", "recipients": 5},
        {"event_type": "DischargeFallbackUnavailable", "services_full": 7},
        {"event_type": "PackageRequested", "package": "not an object"},
        {"event_type": "ProviderUpdated", "profile": ["x"]},
    ],
    ids=["recipients", "services_full", "package", "profile"],
)
def test_a_record_whose_fields_are_not_its_events_is_a_line_still(value):
    """A forged record, or a dead letter's original, may carry anything: its line says so and the
    stream goes on (only the record's own summary runs, and a failing one is said so)."""
    line = describe(record(json.dumps(value).encode()))
    assert line.event_type == value["event_type"]
    assert line.render()
    if value["event_type"] in ("PlacementConfirmed", "DischargeFallbackUnavailable"):
        assert line.outcome == "(fields not as its event's)"
