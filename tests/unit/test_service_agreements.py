"""The record rules of the hand-off to finance (decision records 0109-0111), pure: the funder split cut
to an agreement's dates (pennies adding up), the above-band part to a top-up's payer or the council,
endings the day before (cancelled when before the start), supersession only when terms differ, the
weekly commitment pro rata by UK days, and the parameters refused by name."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.events import ServiceAgreementRecorded
from services.brokerage import domain

D = dt.date
COUNCIL = domain.Period(D(2026, 12, 7), "council", (("council", Decimal(100)),))
JOINT = domain.Period(
    D(2026, 12, 21), "joint", (("council", Decimal("33.33")), ("nhs_continuing_healthcare", Decimal("66.67")))
)


BASE = domain.AgreementTerms(
    provider_id="bluebell-care",
    zone="melton",
    band="fringe",
    hourly_rate=Decimal("21.00"),
    band_rate=Decimal("19.95"),
    hours_per_week=Decimal("10.00"),
    start_date=D(2026, 12, 7),
    end_date=None,
    status="agreed",
    cost_centre="ASC-HC-MEL",
    rate_card="2026-27",
    funding_revision=1,
    funding=(),
)


def terms(**kw: Any) -> domain.AgreementTerms:
    return dataclasses.replace(BASE, **kw)


def funding(t: domain.AgreementTerms, periods, top_up=None) -> tuple[domain.FundingPart, ...]:
    return domain.agreement_funding(
        start_date=t.start_date,
        end_date=t.end_date,
        periods=periods,
        hours_per_week=t.hours_per_week,
        hourly_rate=t.hourly_rate,
        band_rate=t.band_rate,
        top_up_paid_by=top_up,
    )


def test_the_split_follows_the_periods_cut_to_the_agreement_and_every_part_adds_up_to_the_weekly_cost():
    t = terms(end_date=D(2027, 1, 10))
    first, second = funding(t, [COUNCIL, JOINT])
    assert (first.effective_from, first.effective_to) == (D(2026, 12, 7), D(2026, 12, 20))
    assert (second.effective_from, second.effective_to) == (D(2026, 12, 21), D(2027, 1, 10))
    assert t.weekly_cost == Decimal("210.00")
    for part in (first, second):
        assert sum(line.pounds_per_week for line in part.lines) == t.weekly_cost
    # 199.50 at the band rate split 33.33/66.67 (pennies by largest remainder), 10.50 above it: the council's
    # (an approved above-rate exception: no top-up recorded).
    assert [(x.payer, x.basis, x.pounds_per_week) for x in second.lines] == [
        ("council", "share", Decimal("66.49")),
        ("nhs_continuing_healthcare", "share", Decimal("133.01")),
        ("council", "above_band", Decimal("10.50")),
    ]


def test_a_top_up_pays_the_part_above_the_band_rate_and_a_bid_at_the_rate_has_no_such_line():
    [part] = funding(terms(), [COUNCIL], top_up="third_party")
    assert [(x.payer, x.basis) for x in part.lines] == [("council", "share"), ("third_party_top_up", "above_band")]
    [at_rate] = funding(terms(hourly_rate=Decimal("19.95")), [COUNCIL], top_up="person")
    assert [x.payer for x in at_rate.lines] == ["council"]


def test_periods_outside_the_agreement_are_left_out_and_days_before_the_first_period_are_its():
    ended_early = terms(end_date=D(2026, 12, 14))
    assert [p.funder for p in funding(ended_early, [COUNCIL, JOINT])] == ["council"]
    late_start = terms(start_date=D(2026, 12, 28))
    assert [(p.funder, p.effective_from) for p in funding(late_start, [COUNCIL, JOINT])] == [("joint", D(2026, 12, 28))]
    brought_forward = terms(start_date=D(2026, 12, 1))
    assert funding(brought_forward, [COUNCIL])[0].effective_from == D(2026, 12, 1)
    with pytest.raises(ValueError):
        funding(terms(), [])


def test_an_ending_is_the_last_day_payable_and_before_the_start_cancels():
    t = terms()
    assert domain.ending_terms(t, D(2026, 12, 31)).end_date == D(2026, 12, 31)
    assert domain.ending_terms(t, D(2026, 12, 7)).end_date == D(2026, 12, 7), "one day of care"
    never = domain.ending_terms(t, D(2026, 12, 6))
    assert (never.status, never.end_date) == ("cancelled", None)


def test_only_different_terms_are_a_new_version():
    t = terms(funding=funding(terms(), [COUNCIL]))
    assert not domain.differs(t, dataclasses.replace(t))
    assert domain.differs(t, dataclasses.replace(t, start_date=D(2026, 12, 8)))
    assert domain.differs(t, dataclasses.replace(t, funding_revision=2))


def _record(**kw) -> dict:
    base = {
        "correlation_id": "6f1c2a52-8c1e-4a55-9d6b-1f6f0c1d2e3a",
        "record_id": "5b0d7a1e-3c2f-4e8a-9f10-2a3b4c5d6e7f",
        "agreement_id": "0c9e8d7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f",
        "version": 1,
        "supersedes": None,
        "reason": "placed",
        "status": "agreed",
        "package_id": "6f1c2a52-8c1e-4a55-9d6b-1f6f0c1d2e3a",
        "provider_id": "bluebell-care",
        "zone": "melton",
        "band": "fringe",
        "hourly_rate": "21.00",
        "band_rate": "19.95",
        "hours_per_week": "10.00",
        "weekly_cost": "210.00",
        "start_date": "2026-12-07",
        "end_date": None,
        "funding": [
            {
                "effective_from": "2026-12-07",
                "funder": "council",
                "lines": [
                    {"payer": "council", "basis": "share", "percent": "100", "pounds_per_week": "199.50"},
                    {"payer": "council", "basis": "above_band", "pounds_per_week": "10.50"},
                ],
            }
        ],
        "funding_revision": 0,
        "cost_centre": "ASC-HC-MEL",
        "rate_card": "2026-27",
        "recorded_at": "2026-12-07T10:00:00Z",
    }
    return base | kw


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"version": 2}, "supersedes"),
        ({"supersedes": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"}, "supersedes"),
        ({"end_date": "2026-12-06"}, "ends on or after"),
        ({"weekly_cost": "211.00"}, "add up to"),
        ({"cost_centre": "cost centre with words"}, "cost_centre"),
        ({"funding": []}, "who pays"),
    ],
)
def test_the_contract_refuses_a_record_that_breaks_the_rules(change, complaint):
    ServiceAgreementRecorded.model_validate(_record())
    with pytest.raises(ValidationError) as err:
        ServiceAgreementRecorded.model_validate(_record(**change))
    assert complaint in str(err.value)


def test_the_weekly_commitment_counts_the_uk_days_of_the_week_each_line_covers():
    monday = D(2026, 12, 28)  # a week across the new year; UK dates, whatever the clock change
    whole = terms(funding=funding(terms(), [COUNCIL]))
    from_wednesday = terms(provider_id="other", start_date=D(2026, 12, 30), hourly_rate=Decimal("19.95"))
    from_wednesday = dataclasses.replace(from_wednesday, funding=funding(from_wednesday, [COUNCIL]))
    cancelled = dataclasses.replace(whole, status="cancelled")
    sums = domain.weekly_commitment(
        [("bluebell-care", "a", whole), ("other", "b", from_wednesday), ("bluebell-care", "c", cancelled)], monday
    )
    assert sums == {
        ("bluebell-care", "council"): Decimal("210.00"),  # 199.50 share + 10.50 above band
        ("other", "council"): Decimal("142.50"),  # 199.50 x 5/7
    }
    assert domain.overlap_days(D(2026, 12, 1), D(2026, 12, 27), monday) == 0
    assert domain.overlap_days(D(2026, 12, 1), D(2026, 12, 28), monday) == 1


def test_bad_parameters_are_refused_by_name():
    assert domain.week_refusal(D(2026, 12, 28)) is None
    refusal = domain.week_refusal(D(2026, 12, 30))
    assert refusal is not None and (refusal.status, refusal.field) == (422, "week") and "Wednesday" in refusal.message
    assert domain.export_refusal(D(2026, 12, 1), D(2026, 12, 1)) is None
    for first, last in ((D(2026, 12, 2), D(2026, 12, 1)), (D(2026, 1, 1), D(2027, 1, 2))):
        refused = domain.export_refusal(first, last)
        assert refused is not None and refused.field == "recorded_to"


def test_export_rows_are_one_per_payer_line_in_the_documented_columns():
    t = terms(end_date=D(2027, 1, 10))
    t = dataclasses.replace(t, funding=funding(t, [COUNCIL, JOINT]))
    rows = domain.export_rows(
        record_id="r",
        agreement_id="a",
        version=2,
        supersedes="q",
        reason="funding_changed",
        package_id="p",
        terms=t,
        supplier_name="Bluebell Care",
        service_type="HCDOM",
        recorded_at="2026-12-07T10:00:00+00:00",
    )
    assert len(rows) == 2 + 3 and all(tuple(r) == domain.EXPORT_COLUMNS for r in rows)
    assert rows[0]["AgreementStartDate"] == "07/12/2026" and rows[0]["AgreementEndDate"] == "10/01/2027"
    assert rows[2]["FundingStartDate"] == "21/12/2026" and rows[2]["FundingPercent"] == "33.33"
    assert rows[-1]["FundingBasis"] == "above_band" and rows[-1]["FundingPercent"] == ""
    assert sum(Decimal(r["FundingWeeklyAmount"]) for r in rows[2:]) == Decimal(rows[2]["WeeklyCost"])
