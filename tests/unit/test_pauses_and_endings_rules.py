"""The pure rules of a running package's pauses and endings (services/brokerage/domain.py,
decision record 0078), over every status and any dates."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from services.brokerage import domain, repository

STATUSES = (
    "requested",
    "offered",
    "placed",
    "unplaced",
    "awaiting_approval",
    "started",
    "paused",
    "cancelled",
    "ended",
)
LIMITS = domain.DateLimits(backdate_days=28, ahead_days=90)
TODAY = dt.date(2026, 11, 23)
days = st.integers(min_value=-400, max_value=400).map(lambda n: TODAY + dt.timedelta(days=n))


def test_a_paused_package_is_never_offered_handed_back_started_or_cancelled():
    for action in domain.OFFERING_ACTIONS | {"start", "cancel", "hand_back", "pause"}:
        assert "paused" not in domain.ALLOWED_FROM[action], action
    # The timers that offer a package again take none that is paused.
    for timer in (repository.WINDOWS, repository.REOFFERS, repository.REBROKERING):
        assert "paused" not in timer.due
    assert repository.HOLDS.due == "status = 'paused'"


def test_an_ended_package_admits_no_action_at_all():
    assert all("ended" not in allowed for allowed in domain.ALLOWED_FROM.values())


@given(status=st.sampled_from(STATUSES), started_on=days, effective=days)
def test_an_ending_is_allowed_only_for_a_running_package_from_its_start_within_the_limits(
    status, started_on, effective
):
    refusal = domain.ending_refusal(status, started_on, effective, TODAY, LIMITS)
    allowed = (
        status in ("started", "paused")
        and effective >= started_on
        and TODAY - dt.timedelta(days=28) <= effective <= TODAY + dt.timedelta(days=90)
    )
    assert (refusal is None) == allowed
    if refusal is not None:
        if status not in ("started", "paused"):
            assert (refusal.status, refusal.field) == (409, "status")
        else:
            assert (refusal.status, refusal.field) == (422, "effective_date")


def test_an_ending_before_the_start_is_refused_and_a_placed_package_is_pointed_at_cancel():
    refusal = domain.ending_refusal("started", TODAY, TODAY - dt.timedelta(days=1), TODAY, LIMITS)
    assert refusal is not None and refusal.field == "effective_date" and "before the care started" in refusal.message
    placed = domain.ending_refusal("placed", None, TODAY, TODAY, LIMITS)
    assert placed is not None and placed.status == 409 and "cancel" in placed.message


@given(status=st.sampled_from(STATUSES), started_on=days, paused_on=days)
def test_a_pause_is_for_a_started_package_from_its_start_and_never_in_the_future(status, started_on, paused_on):
    refusal = domain.pause_refusal(status, started_on, paused_on, TODAY, LIMITS)
    allowed = status == "started" and started_on <= paused_on <= TODAY and paused_on >= TODAY - dt.timedelta(days=28)
    assert (refusal is None) == allowed


@given(status=st.sampled_from(STATUSES), paused_on=days, resumed_on=days)
def test_a_resume_is_for_a_paused_package_from_the_pause_on(status, paused_on, resumed_on):
    refusal = domain.resume_refusal(status, paused_on, resumed_on, TODAY, LIMITS)
    allowed = (
        status == "paused"
        and resumed_on >= paused_on
        and TODAY - dt.timedelta(days=28) <= resumed_on <= TODAY + dt.timedelta(days=90)
    )
    assert (refusal is None) == allowed


def test_a_resume_once_the_hold_has_run_out_is_refused_even_before_the_timer_ends_the_package():
    """Found by an attack: a resume a moment after the hold ran out was taken (the timer had not yet
    ended the package)."""
    expires = dt.datetime(2026, 12, 7, 10, tzinfo=dt.UTC)
    args = ("paused", TODAY, TODAY, TODAY, LIMITS)
    assert domain.resume_refusal(*args, hold_expires_at=expires, at=expires - dt.timedelta(seconds=1)) is None
    refusal = domain.resume_refusal(*args, hold_expires_at=expires, at=expires)
    assert refusal is not None and (refusal.status, refusal.field, refusal.code) == (409, "status", "hold-expired")
    assert "10:00 GMT" in refusal.message, "the moment in UK time"


def test_the_hold_counts_from_when_the_pause_is_recorded():
    at = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
    assert domain.hold_expires_at(at, dt.timedelta(days=14)) == dt.datetime(2026, 12, 7, 10, tzinfo=dt.UTC)
