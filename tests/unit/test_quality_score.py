"""The quality score's derivation from the register (services/runtime/quality.py) and the CQC care
directory CSV reader (services/providers/domain.py): pure functions, no I/O."""

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.brokerage import domain as brokerage
from services.providers import domain
from services.runtime import quality
from tests.unit.test_brokerage_domain import provider as profile

RATINGS = list(quality.CQC_POINTS)
RISKS = list(quality.RISK_POINTS)


def inputs(cqc="good", risk="low", hand_backs=0, inspected=None) -> quality.QualityInputs:
    return quality.QualityInputs(cqc_rating=cqc, local_risk=risk, hand_backs_12m=hand_backs, cqc_inspected_on=inspected)


def test_the_documented_weights_and_points():
    """docs/guide/award-ranking.md: 0.6 x CQC + 0.3 x local risk + 0.1 x hand-back record."""
    assert quality.score(inputs("good", "low", 0)).score == Decimal("85.0")  # 45 + 30 + 10
    assert quality.score(inputs("requires_improvement", "low", 0)).score == Decimal("61.0")  # 21 + 30 + 10
    assert quality.score(inputs("outstanding", "high", 2)).score == Decimal("72.0")  # 60 + 6 + 6
    assert quality.score(inputs("inadequate", "medium", 9)).score == Decimal("18.0")  # 0 + 18 + 0


def test_not_yet_rated_scores_between_requires_improvement_and_good():
    """The policy for a provider the CQC has not rated: neither rewarded nor shut out."""
    unrated = quality.score(inputs("not_yet_rated")).score
    assert quality.score(inputs("requires_improvement")).score < unrated < quality.score(inputs("good")).score
    assert quality.score(inputs("not_yet_rated")).cqc_points == 50


def test_a_cqc_downgrade_lowers_the_score_by_its_weighted_points():
    good = quality.score(inputs("good"))
    downgraded = quality.score(inputs("requires_improvement"))
    assert good.score - downgraded.score == Decimal("0.6") * (75 - 35)


def test_the_weights_are_reference_data():
    heavy_risk = quality.QualityWeights(cqc=Decimal("0.2"), local_risk=Decimal("0.7"), hand_backs=Decimal("0.1"))
    assert quality.score(inputs("outstanding", "high"), heavy_risk).score == Decimal("44.0")  # 20 + 14 + 10


@given(
    st.sampled_from(RATINGS),
    st.sampled_from(RISKS),
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=50),
)
def test_the_score_is_0_to_100_and_never_rises_with_hand_backs(cqc, risk, fewer, more):
    fewer, more = sorted((fewer, more))
    a, b = quality.score(inputs(cqc, risk, fewer)), quality.score(inputs(cqc, risk, more))
    assert Decimal(0) <= b.score <= a.score <= Decimal(100)


@given(st.sampled_from(RATINGS), st.sampled_from(RATINGS), st.sampled_from(RISKS))
def test_a_better_cqc_rating_never_scores_lower(one, other, risk):
    if quality.CQC_POINTS[one] >= quality.CQC_POINTS[other]:
        assert quality.score(inputs(one, risk)).score >= quality.score(inputs(other, risk)).score


def test_the_brokerage_ranks_with_the_same_function():
    p = profile(cqc_rating="requires_improvement", local_risk="medium", hand_backs_12m=1)
    assert brokerage.quality_score(p) == quality.score(inputs("requires_improvement", "medium", 1)).score


def test_the_record_keeps_inputs_points_and_weights_and_explains_them():
    record = quality.score(inputs("requires_improvement", "low", 1, dt.date(2026, 10, 3))).as_record()
    assert record["score"] == "59.0" and record["cqc_points"] == 35 and record["hand_back_points"] == 80
    assert record["weights"] == {"cqc": "0.6", "local_risk": "0.3", "hand_backs": "0.1"}
    words = quality.explain(record)
    assert words[0] == "CQC rating Requires improvement (inspected 2026-10-03): 35 points x 0.6"
    assert words[2] == "1 hand-back(s) in 12 months: 80 points x 0.1"


# ---- hand-backs in the last 12 months, as of a day (decision 0119) ------------------------

DAYS = st.dates(min_value=dt.date(2001, 1, 1), max_value=dt.date(2099, 12, 31))


@given(DAYS)
def test_a_hand_back_dated_366_days_before_does_not_count_and_364_days_before_does(as_of):
    old, recent = as_of - dt.timedelta(days=366), as_of - dt.timedelta(days=364)
    assert not quality.in_last_12_months(old, as_of)
    assert quality.in_last_12_months(recent, as_of)
    counted = quality.inputs_as_of(cqc_rating="good", local_risk="low", as_of=as_of, hand_back_dates=[old, recent])
    assert counted.hand_backs_12m == 1 and counted.hand_back_dates == (recent,)
    assert quality.score(counted).hand_back_points == 80


@given(DAYS, st.lists(st.integers(min_value=-30, max_value=800), max_size=8))
def test_the_count_is_the_dates_in_the_365_days_to_the_day_never_later_ones(as_of, ages):
    dates = [as_of - dt.timedelta(days=a) for a in ages]
    counted = quality.inputs_as_of(cqc_rating="good", local_risk="low", as_of=as_of, hand_back_dates=dates)
    assert counted.hand_backs_12m == sum(0 <= a < 365 for a in ages), "the day itself counts; 365 days before not"
    assert counted.hand_back_dates == tuple(sorted(d for d in dates if as_of - dt.timedelta(days=365) < d <= as_of))


def test_a_hand_back_ages_out_of_the_score_with_no_new_profile():
    handed_back = dt.date(2026, 3, 2)
    p = profile(hand_backs_12m=1, hand_back_dates=[handed_back])
    within = brokerage.quality_inputs(p, as_of=handed_back + dt.timedelta(days=364))
    aged = brokerage.quality_inputs(p, as_of=handed_back + dt.timedelta(days=365))
    assert (within.hand_backs_12m, aged.hand_backs_12m) == (1, 0)
    assert quality.score(aged).score > quality.score(within).score
    # A profile written before the dates travelled (v2 upgraded): its count as written.
    legacy = brokerage.quality_inputs(profile(hand_backs_12m=2), as_of=handed_back)
    assert legacy.hand_backs_12m == 2 and legacy.hand_backs_as_of is None


def test_the_record_says_which_hand_backs_counted_and_to_which_day():
    as_of = dt.date(2027, 3, 1)
    dates = [dt.date(2026, 2, 28), dt.date(2026, 5, 2), dt.date(2026, 11, 20)]
    scored = quality.score(
        quality.inputs_as_of(cqc_rating="good", local_risk="low", as_of=as_of, hand_back_dates=dates)
    )
    record = scored.as_record()
    assert record["hand_backs_12m"] == 2 and record["hand_back_dates"] == ["2026-05-02", "2026-11-20"]
    assert record["hand_backs_as_of"] == "2027-03-01"
    assert quality.explain(record)[2] == (
        "2 hand-back(s) in the 12 months to 2027-03-01 (2026-05-02, 2026-11-20): 60 points x 0.1"
    )


# ---- the CQC care directory CSV -------------------------------------------------------------

HEADER = "Location ID,Location Name,Location Type,Location Latest Overall Rating,Publication Date\n"


def test_a_directory_is_read_by_column_name_with_its_preamble():
    data = (
        b"Care directory with ratings\nPublished by CQC\n\n"
        b"Location Name,Publication Date,Location ID,Location Latest Overall Rating\n"
        b"Bluebell,03/10/2026,1-1000000001,Requires improvement\n"
        b"Somewhere else,01/02/2026,1-555,Good\n"
        b"New agency,,1-777,\n"
    )
    rows, refused = domain.read_cqc_csv(data)
    assert refused == []
    assert [(r.location_id, r.rating, r.published_on) for r in rows] == [
        ("1-1000000001", "requires_improvement", dt.date(2026, 10, 3)),
        ("1-555", "good", dt.date(2026, 2, 1)),
        ("1-777", "not_yet_rated", None),
    ]
    assert rows[0].line == 5


def test_bad_rows_are_refused_with_their_line_column_and_problem():
    data = (
        HEADER + "1-1,A,Homecare,Good,03/10/2026\n"
        "X-2,B,Homecare,Good,03/10/2026\n"
        "1-3,C,Homecare,Brilliant,03/10/2026\n"
        "1-4,D,Homecare,Good,31/02/2026\n"
    ).encode()
    rows, refused = domain.read_cqc_csv(data)
    assert [r.location_id for r in rows] == ["1-1"]
    assert [(r.line, r.field) for r in refused] == [
        (3, "Location ID"),
        (4, "Location Latest Overall Rating"),
        (5, "Publication Date"),
    ]
    assert "Brilliant" in refused[1].problem


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xfe\x00garbage\x00", b"name,rating\nA,Good\n", b"Location ID,Location Name\n1-1,A\n"],
)
def test_a_file_without_the_cqc_columns_is_refused_whole(data):
    with pytest.raises(domain.CqcFileRefused):
        domain.read_cqc_csv(data)


def test_changes_match_framework_locations_only_and_refuse_conflicts_and_older_ratings():
    rows, _ = domain.read_cqc_csv(
        (
            HEADER + "1-1,A,Homecare,Requires improvement,03/10/2026\n"  # a downgrade
            "1-2,B,Homecare,Good,01/01/2026\n"  # the same as held
            "1-3,C,Homecare,Good,01/01/2026\n"  # rated twice, differently
            "1-3,C,Homecare,Inadequate,01/01/2026\n"
            "1-4,D,Homecare,Outstanding,01/01/2020\n"  # older than the rating held
            "1-99,Z,Homecare,Good,01/01/2026\n"  # not on the framework
        ).encode()
    )
    register = {
        "1-1": ("a-care", "good", dt.date(2025, 1, 1)),
        "1-2": ("b-care", "good", dt.date(2026, 1, 1)),
        "1-3": ("c-care", "good", None),
        "1-4": ("d-care", "good", dt.date(2025, 6, 1)),
    }
    changes, refused, unchanged = domain.cqc_changes(rows, register)
    assert [(c.provider_id, c.rating_was, c.rating, c.inspected_on) for c in changes] == [
        ("a-care", "good", "requires_improvement", dt.date(2026, 10, 3))
    ]
    assert unchanged == ["b-care"]
    assert sorted((r.location_id, r.line) for r in refused) == [("1-3", 4), ("1-3", 5), ("1-4", 6)]


def test_only_the_frameworks_locations_are_read_past_their_id():
    """The directory lists all of England: a flaw in another location's rating or date refuses nothing."""
    data = (HEADER + "1-1,A,Homecare,Good,03/10/2026\n1-2,B,Homecare,Brilliant,never\nX,C,Homecare,Good,\n").encode()
    ignored = [0]
    rows, refused = domain.read_cqc_csv(data, only={"1-1"}, ignored=ignored)
    assert [r.location_id for r in rows] == ["1-1"] and ignored == [1]
    assert [(r.line, r.field) for r in refused] == [(4, "Location ID")]  # a malformed id is still a broken file


def test_a_cut_short_row_or_a_future_date_is_refused_never_read_as_not_yet_rated():
    """A truncated or badly quoted row once reset a provider to "not yet rated", and a rating dated
    9999 blocked every later import (an attack test found both)."""
    data = (
        (
            HEADER + "1-1,A\n"  # cut short: no rating, no date
            "1-2,B,Homecare,Good,31/12/9999\n"
            '1-3,C,Homecare,"Good,01/10/2026\n'  # an unclosed quote swallows the rest
        ).encode()
    )
    rows, refused = domain.read_cqc_csv(data, today=dt.date(2026, 12, 1))
    assert rows == []
    assert [(r.location_id, r.field) for r in refused] == [
        ("1-1", "Location Latest Overall Rating"),
        ("1-2", "Publication Date"),
        ("1-3", "Publication Date"),
    ]
    assert "cut short" in refused[0].problem and "in the future" in refused[1].problem


def test_millions_of_bad_rows_are_counted_not_kept_and_a_giant_cell_refuses_the_file():
    total = [0]
    data = (HEADER + "x\n" * 100_000).encode()
    rows, refused = domain.read_cqc_csv(data, refused_total=total)
    assert rows == [] and len(refused) == domain.MAX_REFUSED_LISTED and total == [100_000]
    with pytest.raises(domain.CqcFileRefused, match="line 2"):
        domain.read_cqc_csv((HEADER + "1-1," + "a" * 200_000 + ",Homecare,Good,01/10/2026\n").encode())
