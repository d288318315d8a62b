"""Who is told what, how, and in which words: the notifications service's rules, no I/O."""

import datetime as dt
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import get_args

import pytest

from schemas.events import (
    ChangeDeclined,
    ChangeOffered,
    ChangeWithdrawn,
    DischargeFallbackUnavailable,
    DischargeReferralReleased,
    DischargeReferred,
    Envelope,
    ExceptionDecided,
    ExceptionFirstApproved,
    ExceptionRequested,
    FundingPeriod,
    FundingRecorded,
    FundingShare,
    MessageName,
    OfferMade,
    PackageCancelled,
    PackageChanged,
    PackageEnded,
    PackageHandedBack,
    PackageHandedOver,
    PackagePaused,
    PackagePlaced,
    PackageReopened,
    PackageResumed,
    PackageReviewed,
    PackageSpec,
    PackageStarted,
    PackageUnplaced,
    TopUp,
    VisitPattern,
    parse_event,
)
from schemas.vocabulary import ReopenReason
from services.notifications import domain
from services.notifications.channels import Channels, Outgoing, configured
from services.notifications.domain import Contact, Message
from services.notifications.templates import Templates
from services.runtime.settings import load

ALL = frozenset(domain.CHANNELS)


def placed(**overrides) -> PackagePlaced:
    package_id = uuid.uuid4()
    values = dict(
        correlation_id=package_id,
        package_id=package_id,
        provider_id="bluebell-care",
        offer_round=2,
        tier="supplementary",
        hourly_rate=Decimal("19.95"),
        hours_per_week=Decimal("10.5"),
        start_date=dt.date(2026, 12, 7),
        zone="melton",
        band="fringe",
        urgency="hospital_discharge",
        rate_card="2026-27",
        requested_by="broker.amy",
        losing_provider_ids=["oak-care", "elm-care"],
        placed_at=dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC),
    )
    return PackagePlaced(**values | overrides)


def messages(event, names=None):
    return domain.messages_for(
        event,
        provider_names=names or {"bluebell-care": "Bluebell Home Care"},
        providers_url="https://providers.example/",
    )


def test_a_placement_tells_the_provider_the_broker_the_person_and_each_losing_bidder():
    event = placed()
    told = [(m.message, m.role, m.recipient_id) for m in messages(event)]
    assert told == [
        ("placement_award", "provider", "bluebell-care"),
        ("placement_broker", "broker", "broker.amy"),
        ("placement_person", "person", str(event.package_id)),
        ("placement_outcome", "losing_bidder", "oak-care"),
        ("placement_outcome", "losing_bidder", "elm-care"),
    ]


def test_hours_are_written_alike_in_every_message_whatever_the_request_wrote():
    """The request's "10.50" and "7.00" are "10.5" and "7" in the words (services/runtime/numbers.py)."""
    for written, words in ((Decimal("10.50"), "10.5"), (Decimal("7.00"), "7")):
        told = [m for m in messages(placed(hours_per_week=written)) if "hours_per_week" in m.context]
        assert told and {m.context["hours_per_week"] for m in told} == {words}


def test_a_losing_bidder_never_learns_the_winners_price_or_name():
    for m in messages(placed()):
        if m.role == "losing_bidder":
            text = Templates().render(m.message, m.context)
            assert "19.95" not in text.body + text.subject and "hourly_rate" not in m.context
            assert "Bluebell" not in text.body + text.subject and "bluebell-care" not in str(m.context)


def test_the_winner_is_not_told_it_lost_when_listed_among_the_losers():
    assert [
        m.recipient_id
        for m in messages(placed(losing_provider_ids=["bluebell-care", "oak-care", "oak-care"]))
        if m.role == "losing_bidder"
    ] == ["oak-care"]


NOW = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)


CHANGE_ID = uuid.UUID("3b2f6a10-5d4e-4c8b-9a71-2e0d6c5b4a39")
CHANGED = PackageSpec(
    zone="melton",
    band="urban",
    postcode_district="LE13",
    hours_per_week=Decimal("10.5"),
    visits=VisitPattern(calls_per_day=3, minutes_per_call=30, carers_per_call=1),
    needs=["personal_care"],
    urgency="community",
    start_date=dt.date(2026, 12, 1),
)


def lifecycle(package_id: uuid.UUID) -> dict[str, Envelope]:
    """One event of each later change in a package's life (and the unplaced queue)."""
    common = dict(correlation_id=package_id, package_id=package_id)
    resumed = PackageResumed(
        **common,
        provider_id="oak-care",
        paused_on=dt.date(2026, 11, 22),
        resumed_on=dt.date(2026, 11, 30),
        hours_per_week=Decimal(7),
        resumed_by="broker.raj",
        requested_by="broker.sue",
        resumed_at=NOW,
    )
    # The council pays from December, the package now with elm-care (decision 0161's two cases).
    council_funded = FundingRecorded(
        **common,
        revision=3,
        periods=[
            FundingPeriod(
                effective_from=dt.date(2026, 12, 1),
                funder="council",
                shares=[FundingShare(funder="council", percent=Decimal(100))],
            )
        ],
        provider_id="elm-care",
        recorded_by="broker.raj",
        recorded_at=NOW,
    )
    return {
        "unplaced": PackageUnplaced(
            **common,
            zone="melton",
            band="rural",
            urgency="community",
            hours_per_week=Decimal(7),
            reason="no_acceptable_bid",
            requested_by="broker.sue",
            unplaced_at=NOW,
        ),
        "handed_back": PackageHandedBack(
            **common,
            provider_id="oak-care",
            notice_ends_on=dt.date(2026, 12, 21),
            reason="staff_shortage",
            hours_per_week=Decimal(7),
            recorded_by="broker.raj",
            requested_by="broker.sue",
            recorded_at=NOW,
        ),
        "cancelled_placed": PackageCancelled(
            **common,
            reason="admitted_to_hospital",
            cancelled_by="broker.raj",
            requested_by="broker.sue",
            provider_id="oak-care",
            hours_per_week=Decimal(7),
            cancelled_at=NOW,
        ),
        "cancelled_unplaced": PackageCancelled(
            **common, reason="no_longer_needed", cancelled_by="broker.sue", hours_per_week=Decimal(7), cancelled_at=NOW
        ),
        # Placed with a new provider while the one that handed it back works its notice (decision 0159).
        "cancelled_during_notice": PackageCancelled(
            **common,
            reason="person_died",
            cancelled_by="broker.raj",
            requested_by="broker.sue",
            provider_id="elm-care",
            notice_provider_ids=["oak-care", "ash-care"],
            hours_per_week=Decimal(7),
            cancelled_at=NOW,
        ),
        "reopened": PackageReopened(
            **common,
            provider_id="oak-care",
            reason="provider_suspended",
            hours_per_week=Decimal(7),
            requested_by="broker.sue",
            reopened_at=NOW,
        ),
        "started": PackageStarted(
            **common,
            provider_id="oak-care",
            started_on=dt.date(2026, 11, 30),
            recorded_by="broker.raj",
            requested_by="broker.sue",
            recorded_at=NOW,
        ),
        "ended": PackageEnded(
            **common,
            provider_id="oak-care",
            reason="moved_to_residential_care",
            effective_date=dt.date(2026, 12, 1),
            hours_per_week=Decimal(7),
            ended_by="broker.raj",
            requested_by="broker.sue",
            ended_at=NOW,
        ),
        "paused": PackagePaused(
            **common,
            provider_id="oak-care",
            reason="admitted_to_hospital",
            paused_on=dt.date(2026, 11, 22),
            hold_expires_at=NOW + dt.timedelta(days=14),
            paid_during_hold=True,
            hours_per_week=Decimal(7),
            paused_by="broker.raj",
            requested_by="broker.sue",
            paused_at=NOW,
        ),
        "resumed": resumed,
        # Its provider suspended while the person was in hospital: re-brokered at once, and the
        # PackageReopened that follows tells everyone (decision 0162).
        "resumed_reopened": resumed.model_copy(update={"reopened_because": ReopenReason.provider_suspended}),
        # Changes to a running package (decision 0082).
        "change_offered": ChangeOffered(
            **common,
            change_id=CHANGE_ID,
            provider_id="oak-care",
            package=CHANGED,
            previous_hours_per_week=Decimal(7),
            reason="needs_increased_after_fall",
            effective_date=dt.date(2026, 12, 1),
            window_closes_at=NOW + dt.timedelta(hours=48),
            requested_by="broker.sue",
        ),
        "changed": PackageChanged(
            **common,
            change_id=CHANGE_ID,
            provider_id="oak-care",
            package=CHANGED,
            previous_hours_per_week=Decimal(7),
            hours_per_week=Decimal("10.5"),
            reason="needs_increased_after_fall",
            effective_date=dt.date(2026, 12, 1),
            discussed_with_person=False,
            changed_by="broker.raj",
            requested_by="broker.sue",
            changed_at=NOW,
        ),
        "change_declined": ChangeDeclined(
            **common,
            change_id=CHANGE_ID,
            provider_id="oak-care",
            outcome="declined",
            decline_reason="call_times",
            previous_hours_per_week=Decimal(7),
            hours_per_week=Decimal("10.5"),
            reason="needs_increased_after_fall",
            requested_by="broker.sue",
            declined_at=NOW,
        ),
        "change_withdrawn": ChangeWithdrawn(
            **common,
            change_id=CHANGE_ID,
            provider_id="oak-care",
            because="paused",
            hours_per_week=Decimal("10.5"),
            previous_hours_per_week=Decimal(7),
            requested_by="broker.sue",
            withdrawn_at=NOW,
        ),
        "handed_over": PackageHandedOver(
            **common,
            from_provider_id="oak-care",
            to_provider_id="elm-care",
            previous_hours_per_week=Decimal(7),
            hours_per_week=Decimal("10.5"),
            handed_over_on=dt.date(2026, 12, 8),
            requested_by="broker.sue",
            handed_over_at=NOW,
        ),
        **{
            f"reviewed_{outcome}": PackageReviewed(
                **common,
                review_id=CHANGE_ID,
                provider_id="oak-care",
                outcome=outcome,
                due_on=dt.date(2027, 1, 12),
                reviewed_on=dt.date(2027, 1, 12),
                change_id=CHANGE_ID if outcome in ("changed", "technology_enabled_care") else None,
                technology=["telecare_alarm"] if outcome == "technology_enabled_care" else [],
                next_review_due_on=None if outcome == "ended" else dt.date(2028, 1, 12),
                hours_per_week=Decimal(7),
                reviewed_by="broker.raj",
                requested_by="broker.sue",
                reviewed_at=NOW,
            )
            for outcome in ("no_change", "changed", "technology_enabled_care", "ended")
        },
        "funding": FundingRecorded(
            **common,
            revision=2,
            periods=[
                FundingPeriod(
                    effective_from=dt.date(2026, 12, 1),
                    funder="nhs_discharge",
                    shares=[FundingShare(funder="nhs_discharge", percent=Decimal(100))],
                ),
                FundingPeriod(
                    effective_from=dt.date(2026, 12, 29),
                    funder="joint",
                    shares=[
                        FundingShare(funder="council", percent=Decimal("62.5")),
                        FundingShare(funder="nhs_continuing_healthcare", percent=Decimal("37.5")),
                    ],
                ),
            ],
            top_up=TopUp(paid_by="third_party"),
            provider_id="oak-care",
            recorded_by="broker.raj",
            requested_by="broker.sue",
            recorded_at=NOW,
        ),
        # Decision 0161: a provider still working its notice is told too; a new provider is told alone.
        "funding_with_notice": council_funded.model_copy(update={"other_provider_ids": ["oak-care"]}),
        "funding_for_new_provider": council_funded.model_copy(update={"for_new_provider": True}),
        "funding_unplaced": FundingRecorded(
            **common,
            revision=1,
            periods=[
                FundingPeriod(
                    effective_from=dt.date(2026, 12, 1),
                    funder="self_funder",
                    shares=[FundingShare(funder="self_funder", percent=Decimal(100))],
                )
            ],
            recorded_by="broker.raj",
            recorded_at=NOW,
        ),
        "exception_requested": ExceptionRequested(
            **common,
            provider_id="oak-care",
            hourly_rate=Decimal("24.00"),
            band_rate=Decimal("18.75"),
            zone="melton",
            band="urban",
            urgency="community",
            requested_by="broker.sue",
            requested_at=NOW,
        ),
        "exception_first_approved": ExceptionFirstApproved(
            **common,
            provider_id="oak-care",
            hourly_rate=Decimal("28.00"),
            band_rate=Decimal("18.75"),
            approved_by="broker.raj",
            approver_role="head_of_service",
            approver_limit_percent=None,
            within_limit=True,
            awaiting="second_approver",
            reason="no_provider_at_band_rate",
            requested_by="broker.sue",
            approved_at=NOW,
        ),
        "exception_refused": ExceptionDecided(
            **common,
            decision="rejected",
            decided_by="broker.raj",
            reason="rate_not_justified",
            provider_id="oak-care",
            hourly_rate=Decimal("24.00"),
            requested_by="broker.sue",
            decided_at=NOW,
        ),
        "exception_approved": ExceptionDecided(
            **common,
            decision="approved",
            decided_by="broker.raj",
            reason="urgent_discharge",
            provider_id="oak-care",
            hourly_rate=Decimal("24.00"),
            decided_at=NOW,
        ),
        # Hospital discharge (decision 0097).
        "discharge_referred": DischargeReferred(
            **common,
            service="crisis_response",
            step="fallback",
            referred_on=dt.date(2026, 11, 25),
            medically_fit_on=dt.date(2026, 11, 24),
            days_after_medically_fit=1,
            hours_per_week=Decimal(7),
            requested_by="broker.sue",
            referred_at=NOW,
        ),
        "discharge_reablement_first": DischargeReferred(
            **common,
            service="reablement",
            step="reablement_first",
            referred_on=dt.date(2026, 11, 24),
            medically_fit_on=dt.date(2026, 11, 24),
            days_after_medically_fit=0,
            hours_per_week=Decimal(7),
            requested_by="broker.sue",
            referred_at=NOW,
        ),
        "discharge_fallback_full": DischargeFallbackUnavailable(
            **common,
            services_full=["crisis_response", "reablement"],
            medically_fit_on=dt.date(2026, 11, 24),
            hours_per_week=Decimal(7),
            requested_by="broker.sue",
            recorded_at=NOW,
        ),
        "discharge_released": DischargeReferralReleased(
            **common,
            service="crisis_response",
            released_on=dt.date(2026, 11, 27),
            provider_id="oak-care",
            hours_per_week=Decimal(7),
            requested_by="broker.sue",
            released_at=NOW,
        ),
        "discharge_released_cancelled": DischargeReferralReleased(
            **common,
            service="reablement",
            released_on=dt.date(2026, 11, 27),
            hours_per_week=Decimal(7),
            requested_by="broker.sue",
            released_at=NOW,
        ),
    }


def test_every_change_in_a_packages_life_tells_each_affected_party_once():
    """Issue 14, item 4: who is told what (docs/guide/notifications.md); the family's contact is
    registered under the package id."""
    package_id = uuid.uuid4()
    p = str(package_id)
    expected = {
        "unplaced": [("package_unplaced", "brokerage_team", "brokerage-team")],
        "handed_back": [
            ("package_handed_back", "brokerage_team", "brokerage-team"),
            ("handed_back_provider", "provider", "oak-care"),
            ("handed_back_broker", "broker", "broker.sue"),
            ("handed_back_person", "person", p),
        ],
        "cancelled_placed": [
            ("cancelled_provider", "provider", "oak-care"),
            ("cancelled_broker", "broker", "broker.sue"),
            ("cancelled_person", "person", p),
        ],
        "cancelled_unplaced": [("cancelled_broker", "broker", "broker.sue"), ("cancelled_person", "person", p)],
        "cancelled_during_notice": [
            ("cancelled_provider", "provider", "elm-care"),
            ("cancelled_provider", "provider", "oak-care"),
            ("cancelled_provider", "provider", "ash-care"),
            ("cancelled_broker", "broker", "broker.sue"),
            ("cancelled_person", "person", p),
        ],
        "reopened": [
            ("reopened_provider", "provider", "oak-care"),
            ("reopened_broker", "broker", "broker.sue"),
            ("reopened_person", "person", p),
        ],
        "started": [("started_provider", "provider", "oak-care"), ("started_broker", "broker", "broker.sue")],
        **{
            name: [
                (f"{name}_provider", "provider", "oak-care"),
                (f"{name}_broker", "broker", "broker.sue"),
                (f"{name}_person", "person", p),
            ]
            for name in ("ended", "paused", "resumed")
        },
        "resumed_reopened": [],  # the PackageReopened after it tells them, once
        "change_offered": [("change_offered_provider", "provider", "oak-care")],
        "changed": [
            ("changed_provider", "provider", "oak-care"),
            ("changed_broker", "broker", "broker.sue"),
            ("changed_person", "person", p),
        ],
        "change_declined": [
            ("change_declined_provider", "provider", "oak-care"),
            ("change_declined_broker", "broker", "broker.sue"),
        ],
        "change_withdrawn": [("change_withdrawn_provider", "provider", "oak-care")],
        "handed_over": [("handed_over_provider", "provider", "oak-care")],
        # A review that changes nothing is told by itself; one that changes or ends the package by the
        # change's or the ending's own messages (decision 0088), so nobody hears of it twice.
        "reviewed_no_change": [("reviewed_provider", "provider", "oak-care"), ("reviewed_person", "person", p)],
        "reviewed_changed": [],
        "reviewed_technology_enabled_care": [],
        "reviewed_ended": [],
        "funding": [("funding_provider", "provider", "oak-care"), ("funding_person", "person", p)],
        "funding_unplaced": [("funding_person", "person", p)],
        "funding_with_notice": [
            ("funding_provider", "provider", "elm-care"),
            ("funding_provider", "provider", "oak-care"),
            ("funding_person", "person", p),
        ],
        "funding_for_new_provider": [("funding_provider", "provider", "elm-care")],
        "exception_requested": [("exception_requested", "broker", "broker.sue")],
        # The first of two approvals: the team of the second approvers, once (decision 0140).
        "exception_first_approved": [("exception_second_approval_needed", "brokerage_team", "brokerage-team")],
        "exception_refused": [("exception_refused_bidder", "provider", "oak-care")],
        "exception_approved": [],  # the award that follows tells everyone
        # Hospital discharge (decision 0097): the in-house team, the broker and the family once each; no
        # room anywhere: the brokerage team; a release: the team that stops (the placement tells the rest).
        "discharge_referred": [
            ("discharge_referred_service", "brokerage_team", "in-house-crisis-response"),
            ("discharge_referred_broker", "broker", "broker.sue"),
            ("discharge_referred_person", "person", p),
        ],
        "discharge_reablement_first": [
            ("discharge_referred_service", "brokerage_team", "in-house-reablement"),
            ("discharge_referred_broker", "broker", "broker.sue"),
            ("discharge_referred_person", "person", p),
        ],
        "discharge_fallback_full": [("discharge_fallback_unavailable", "brokerage_team", "brokerage-team")],
        "discharge_released": [("discharge_referral_released_service", "brokerage_team", "in-house-crisis-response")],
        "discharge_released_cancelled": [
            ("discharge_referral_released_service", "brokerage_team", "in-house-reablement")
        ],
    }
    for name, event in lifecycle(package_id).items():
        told = [(m.message, m.role, m.recipient_id) for m in messages(event)]
        assert told == expected[name], name
        assert len(set(told)) == len(told)


def test_an_event_written_before_it_named_the_broker_tells_the_brokerage_team_instead():
    package_id = uuid.uuid4()
    reopened = lifecycle(package_id)["reopened"].model_copy(update={"requested_by": None})
    assert ("reopened_broker", "brokerage_team", "brokerage-team") in [
        (m.message, m.role, m.recipient_id) for m in messages(reopened)
    ]


def test_reasons_reach_people_in_words_and_typed_text_never_does():
    package_id = uuid.uuid4()
    [provider, _broker, person] = messages(lifecycle(package_id)["cancelled_placed"])
    assert provider.context["reason"] == "admitted to hospital"
    body = Templates().render(person.message, person.context).body
    assert "admitted to hospital" in body and "admitted_to_hospital" not in body


def test_a_new_offer_goes_only_to_providers_who_opted_in():
    package_id = uuid.uuid4()
    spec = PackageSpec(
        zone="melton",
        band="urban",
        postcode_district="LE13",
        hours_per_week=Decimal(7),
        visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1),
        needs=["personal_care"],
        urgency="community",
        start_date=dt.date(2026, 12, 1),
    )
    offer = OfferMade(
        correlation_id=package_id,
        package_id=package_id,
        offer_round=1,
        tier="prime",
        provider_ids=["oak-care", "elm-care"],
        package=spec,
        band_rate=Decimal("18.75"),
        window_closes_at=dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC),
    )
    [oak, elm] = messages(offer)
    portal = Contact(
        "provider", "oak-care", email="o@example.org", channels=("email",), opted_in=frozenset({"new_offer"})
    )
    plain = Contact("provider", "elm-care", email="e@example.org", channels=("email",))
    assert domain.plan(oak, portal, ALL).channels == (("email", "o@example.org"),)
    assert domain.plan(elm, plain, ALL).outcome == "nothing"
    assert domain.plan(elm, None, ALL).outcome == "nothing", "an optional message waits for nobody"


@pytest.mark.parametrize(
    "contact, outcome, reason",
    [
        (None, "await_contact", "no contact registered"),
        (Contact("person", "p", channels=()), "fail", "no usable channel (no channel chosen)"),
        (
            Contact("person", "p", channels=("email", "notify_sms")),
            "fail",
            "no usable channel (email: no email address registered; notify_sms: no mobile number registered)",
        ),
        (
            Contact("person", "p", email="a@b.org", channels=("notify_email",)),
            "fail",
            "no usable channel (notify_email is not configured in this installation)",
        ),
        (
            Contact("person", "p", email="a@b.org", channels=("email",), opted_out=frozenset({"placement_person"})),
            "skip",
            "the recipient opted out of placement_person",
        ),
    ],
)
def test_a_message_that_cannot_go_says_why(contact, outcome, reason):
    message = Message("placement_person", "person", "p", {})
    result = domain.plan(message, contact, frozenset({"email", "log", "webhook", "notify_sms"}))
    assert (result.outcome, result.reason) == (outcome, reason)


def test_every_usable_preferred_channel_is_used_and_the_unusable_ones_noted():
    contact = Contact(
        "provider",
        "oak-care",
        email="o@example.org",
        webhook_url="https://oak.example/hook",
        has_webhook_secret=True,
        channels=("webhook", "notify_sms", "email"),
    )
    result = domain.plan(Message("placement_award", "provider", "oak-care", {}), contact, ALL)
    assert result.channels == (("webhook", "https://oak.example/hook"), ("email", "o@example.org"))
    assert result.notes == ("notify_sms: no mobile number registered",)


def test_a_webhook_without_its_secret_is_not_usable():
    contact = Contact("provider", "oak-care", webhook_url="https://oak.example/hook", channels=("webhook",))
    assert domain.plan(Message("placement_award", "provider", "oak-care", {}), contact, ALL).outcome == "fail"


def test_essential_messages_ignore_opt_outs():
    contact = Contact(
        "provider",
        "oak-care",
        email="o@example.org",
        channels=("email",),
        opted_out=frozenset({"placement_award", "placement_outcome"}),
    )
    assert domain.plan(Message("placement_award", "provider", "oak-care", {}), contact, ALL).outcome == "send"
    assert domain.plan(Message("placement_outcome", "losing_bidder", "oak-care", {}), contact, ALL).outcome == "skip"


def test_the_person_is_told_who_comes_from_when_and_how_to_raise_a_concern():
    event = placed()
    person = next(m for m in messages(event) if m.role == "person")
    text = Templates().render(person.message, person.context)
    assert text.subject == "Your home care starts on Monday 7 December 2026"
    assert "carers from Bluebell Home Care" in text.body and "10.5 hours a week" in text.body
    assert "concern" in text.body and str(event.package_id) in text.body
    assert "19.95" not in text.body, "the person is not told the price"
    assert (text.template, text.large_print, text.notes) == ("en/placement_person.txt.j2", False, ())


def test_the_provider_gets_the_award_and_where_to_fetch_the_persons_details():
    event = placed()
    award = Templates().render("placement_award", messages(event)[0].context)
    # The provider's own route (the provider API), not the brokerage team's (found by an attack).
    assert f"https://providers.example/me/packages/{event.package_id}/person" in award.body
    assert "£19.95 an hour" in award.body and "Monday 7 December 2026" in award.subject


def test_large_print_is_used_where_a_template_exists_and_reported_where_none_does():
    event = placed()
    person, award = [m for m in messages(event) if m.role in ("person", "provider")][::-1]
    large = Templates().render(person.message, person.context, large_print=True)
    assert large.template == "en/placement_person.large-print.txt.j2" and large.large_print and not large.notes
    assert max(len(line) for line in large.body.splitlines()) <= 60, "short lines"
    standard = Templates().render(award.message, award.context, large_print=True)
    assert standard.template == "en/placement_award.txt.j2" and not standard.large_print
    assert standard.notes == ("large print asked for; no large-print placement_award template, standard sent",)


def test_a_preferred_language_is_used_where_a_template_exists_and_reported_where_none_does(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "cy").mkdir()
    (tmp_path / "en" / "hello.txt.j2").write_text("Subject: Hello {{ name }}\n\nHello.\n")
    (tmp_path / "cy" / "hello.txt.j2").write_text("Subject: Helo {{ name }}\n\nHelo.\n")
    templates = Templates(tmp_path)
    welsh = templates.render("hello", {"name": "Sam"}, language="cy")
    assert (welsh.subject, welsh.body, welsh.notes) == ("Helo Sam", "Helo.\n", ())
    assert templates.render("hello", {"name": "Sam"}, language="cy-GB").template == "cy/hello.txt.j2"
    polish = templates.render("hello", {"name": "Sam"}, language="pl")
    assert polish.subject == "Hello Sam" and polish.notes == ("no hello template in language 'pl'; sent in 'en'",)


def test_every_message_has_a_template_that_renders_with_its_context():
    package_id = uuid.uuid4()
    spec = PackageSpec(
        zone="melton",
        band="urban",
        postcode_district="LE13",
        hours_per_week=Decimal(7),
        visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1),
        needs=["personal_care"],
        urgency="community",
        start_date=dt.date(2026, 12, 1),
    )
    events = [
        placed(),
        *lifecycle(package_id).values(),
        OfferMade(
            correlation_id=package_id,
            package_id=package_id,
            offer_round=1,
            tier="prime",
            provider_ids=["oak-care"],
            package=spec,
            band_rate=Decimal("18.75"),
            window_closes_at=dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC),
        ),
    ]
    seen = set()
    for event in events:
        for m in messages(event):
            for large_print in (False, True):
                text = Templates().render(m.message, m.context, large_print=large_print)
                assert text.subject and text.body.strip() and "{{" not in text.body
            seen.add(m.message)
    assert seen == set(domain.MESSAGES)
    assert set(domain.MESSAGES) == set(get_args(MessageName)), "the event contract names every message"


def test_an_error_fit_for_an_event_has_no_address():
    assert domain.scrub("550 <sam@example.org>: no such user", "sam@example.org") == "550 <<address>>: no such user"


def test_channels_are_usable_only_when_configured():
    assert configured(load("notifications")) == {"log", "webhook"}
    full = load("notifications", smtp_host="127.0.0.1", notify_api_key="k", notify_email_template_id="t")
    assert configured(full) == {"log", "webhook", "email", "notify_email"}


def test_a_large_print_email_carries_a_large_html_part_beside_the_plain_text():
    out = Outgoing(
        delivery_id=str(uuid.uuid4()),
        package_id="p",
        message="placement_person",
        channel="email",
        address="sam@example.org",
        subject="Your care",
        body="Hello.\n\nFrom Monday <soon>.\n",
        large_print=True,
        context={},
    )
    msg = Channels(load("notifications")).email_message(out)
    assert msg["Message-ID"] == f"<{out.delivery_id}@homecare-brokerage>"
    html_body, plain_body = msg.get_body(("html",)), msg.get_body(("plain",))
    assert html_body is not None and plain_body is not None
    html_part = html_body.get_content()
    assert "font-size: 24px" in html_part and "&lt;soon&gt;" in html_part
    assert plain_body.get_content() == out.body


def test_the_funding_message_says_which_call_a_funder_pays_whole():
    """Decision record 0121: the provider invoices the NHS for the named call, the council for the rest."""
    package_id = uuid.uuid4()
    event = FundingRecorded(
        correlation_id=package_id,
        package_id=package_id,
        revision=1,
        periods=[
            FundingPeriod(
                effective_from=dt.date(2026, 12, 1),
                funder="council",
                shares=[FundingShare(funder="council", percent=Decimal(100))],
                calls=[{"call": 1, "funder": "nhs_discharge"}],
            )
        ],
        provider_id="oak-care",
        recorded_by="broker.raj",
        recorded_at=NOW,
    )
    [provider, _person] = messages(event)
    funders = provider.context["periods"][0]["funders"]
    assert funders.startswith("call 1 of each day: ") and "the rest: " in funders and "100%" in funders


def test_the_guide_lists_exactly_the_essential_messages():
    """docs/guide/notifications.md names every message opt-outs cannot silence, and no other."""
    guide = (Path(__file__).resolve().parents[2] / "docs/guide/notifications.md").read_text()
    paragraph = guide[guide.index("**Essential** messages") :].split("Others can be opted out of")[0]
    listed = set(re.findall(r"`([a-z_]+)`", paragraph))
    assert listed == {name for name, kind in domain.MESSAGES.items() if kind.essential}


NOTIFIED = {t.__name__ for t in get_args(domain.NotifiedEvent)}
SAMPLES = Path(__file__).parents[2] / "schemas/samples"


@pytest.mark.parametrize(
    "sample",
    sorted(p for p in SAMPLES.glob("*.json") if p.name.split(".")[0] in NOTIFIED),
    ids=lambda p: p.name,
)
def test_who_is_told_follows_from_the_event_alone(sample):
    """handlers.notify reads the recipients' contacts and the provider's name in one call, for the
    recipients that messages_for names without names (decision 0145): a name only changes words."""
    event = parse_event(sample.read_bytes())
    provider_id = getattr(event, "provider_id", None) or "bluebell-care"
    with_names = messages(event, {provider_id: "A Provider With A Name"})
    without = domain.messages_for(event, provider_names={}, providers_url="https://providers.example/")
    assert [(m.kind, m.recipient_id, m.message) for m in with_names] == [
        (m.kind, m.recipient_id, m.message) for m in without
    ]


class _NamesLookedUp(dict):
    """provider_names that remembers every provider whose name was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


@pytest.mark.parametrize(
    "sample",
    sorted(p for p in SAMPLES.glob("*.json") if p.name.split(".")[0] in NOTIFIED),
    ids=lambda p: p.name,
)
def test_the_names_read_for_an_event_are_every_name_its_messages_use(sample):
    """handlers.notify_all reads the names of named_providers(event) for each event of a batch;
    a name its messages use but that list missed would be the provider's id when the event is
    planned alone and its name when another event of the batch named it (decision 0151)."""
    event = parse_event(sample.read_bytes())
    names = _NamesLookedUp()
    domain.messages_for(event, provider_names=names, providers_url="https://providers.example/")
    assert names.asked <= set(domain.named_providers(event)), (names.asked, domain.named_providers(event))


def test_a_withdrawn_change_tells_its_provider_alone_why_and_that_the_hours_stay():
    """Found by an attack: a change withdrawn by a pause stayed open on the provider's portal and
    nobody told the provider. The provider holding the package is told, once, in words from the code."""
    [told] = messages(lifecycle(uuid.uuid4())["change_withdrawn"])
    assert (told.message, told.role, told.recipient_id) == ("change_withdrawn_provider", "provider", "oak-care")
    assert told.context["because"] == "the package is paused"
    text = Templates().render(told.message, told.context, large_print=False)
    assert "withdrawn" in text.subject and "the package is paused" in text.body
    assert "7 to\n10.5 hours a week" in text.body


def test_a_no_change_review_of_a_paused_package_tells_nobody_to_carry_on_visiting():
    """Found by an attack: the provider was told "carry on with the visits as they are" and the
    family "will go on visiting as now" while the person was in hospital."""
    event = lifecycle(uuid.uuid4())["reviewed_no_change"]
    for paused in (False, True):
        told = messages(event.model_copy(update={"paused": paused}))
        provider, person = (Templates().render(m.message, m.context, large_print=False).body for m in told)
        # Paused, the same provider may not be the one to come back (its suspension re-brokers the
        # package at the resume: found by a second attack), so neither message promises it.
        assert ("do not visit until the council tells you what happens next" in provider) is paused
        assert ("Carry on with the visits as they are" in provider) is not paused
        assert ("once the council knows you are home, and it will tell you who comes" in person) is paused
        assert ("will go on visiting as now" in person) is not paused


def test_each_channel_but_the_log_names_the_contact_field_it_sends_to():
    """One table (``ADDRESS_FIELD``) says which field a channel needs: the API refuses a contact
    choosing a channel without it, and the plan sends to the same field."""
    full = Contact(
        "provider",
        "oak",
        email="a@example.org",
        phone="+447700900123",
        webhook_url="https://h.example/x",
        has_webhook_secret=True,
    )
    assert set(domain.ADDRESS_FIELD) | {"log"} == set(get_args(domain.Channel))
    for channel, field_name in domain.ADDRESS_FIELD.items():
        assert full.address_for(channel) == getattr(full, field_name), channel
        assert Contact("provider", "oak").address_for(channel) is None, channel


@pytest.mark.parametrize("channel", ["notify_sms", "webhook", "pigeon"])
def test_a_seed_channel_the_seed_has_no_address_for_is_refused_at_start_up(monkeypatch, channel):
    """deploy/reference/contacts.yaml holds email addresses only: seeding everyone with a text-message
    or webhook channel would make every message to them fail, so the setting refuses it."""
    monkeypatch.setenv("NOTIFICATIONS_SEED_CHANNEL", channel)
    with pytest.raises(ValueError, match="seed_channel"):
        load("notifications")


def test_the_seed_channel_may_be_email(monkeypatch):
    monkeypatch.setenv("NOTIFICATIONS_SEED_CHANNEL", "notify_email")
    assert load("notifications").seed_channel == "notify_email"
