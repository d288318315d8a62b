"""Who is told what, and how. No I/O.

An event becomes :class:`Message` s (one per recipient: what to say, with the template's
variables); each message meets its recipient's registered :class:`Contact` and becomes a
:class:`Plan`: send on these channels, wait for a contact, skip (opted out) or fail (reported
with the reason - never silently dropped).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

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
    FundingRecorded,
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
    PackageStarted,
    PackageUnplaced,
)
from schemas.vocabulary import FUNDER_WORDS, reason_words
from services.runtime import clock
from services.runtime.numbers import hours_text

Role = Literal["provider", "broker", "person", "losing_bidder", "brokerage_team"]
Kind = Literal["provider", "broker", "person", "brokerage_team"]
Channel = Literal["email", "notify_email", "notify_sms", "webhook", "log"]
# The contact field each channel sends to (the log channel needs none): a contact that chooses a
# channel must give its field (refused at the API otherwise).
ADDRESS_FIELD: dict[str, str] = {
    "email": "email",
    "notify_email": "email",
    "notify_sms": "phone",
    "webhook": "webhook_url",
}

CHANNELS: tuple[str, ...] = ("email", "notify_email", "notify_sms", "webhook", "log")
NO_CHANNEL = "none"
BROKERAGE_TEAM = "brokerage-team"

# Whose contact a role reads: a losing bidder is a provider like any other.
KIND_OF_ROLE: dict[str, str] = {
    "provider": "provider",
    "losing_bidder": "provider",
    "broker": "broker",
    "person": "person",
    "brokerage_team": "brokerage_team",
}


@dataclass(frozen=True)
class MessageKind:
    name: str
    essential: bool = False  # sent whatever the opt-outs: the recipient must act on it
    optional: bool = False  # sent only to those who opted in


MESSAGES: dict[str, MessageKind] = {
    m.name: m
    for m in (
        MessageKind("placement_award", essential=True),
        MessageKind("placement_broker"),
        MessageKind("placement_person"),
        MessageKind("placement_outcome"),
        MessageKind("package_unplaced", essential=True),
        MessageKind("package_handed_back", essential=True),
        MessageKind("new_offer", optional=True),
        # A package's later life (docs/guide/notifications.md). Essential where the recipient must
        # act: a provider must not send carers to care that was stopped or taken from it.
        MessageKind("cancelled_provider", essential=True),
        MessageKind("cancelled_broker"),
        MessageKind("cancelled_person"),
        MessageKind("handed_back_provider", essential=True),
        MessageKind("handed_back_broker"),
        MessageKind("handed_back_person"),
        MessageKind("reopened_provider", essential=True),
        MessageKind("reopened_broker"),
        MessageKind("reopened_person"),
        MessageKind("started_provider"),
        MessageKind("started_broker"),
        # Pauses and endings (decision 0078): the provider must stand carers down or send them again.
        MessageKind("ended_provider", essential=True),
        MessageKind("ended_broker"),
        MessageKind("ended_person"),
        MessageKind("paused_provider", essential=True),
        MessageKind("paused_broker"),
        MessageKind("paused_person"),
        MessageKind("resumed_provider", essential=True),
        MessageKind("resumed_broker"),
        MessageKind("resumed_person"),
        # Changes to a running package (decision 0082): the provider must answer an offered change,
        # send carers to the new pattern, or carry on and then stop at a hand-over.
        MessageKind("change_offered_provider", essential=True),
        MessageKind("changed_provider", essential=True),
        MessageKind("changed_broker"),
        MessageKind("changed_person"),
        MessageKind("change_declined_provider", essential=True),
        MessageKind("change_declined_broker"),
        MessageKind("change_withdrawn_provider", essential=True),
        MessageKind("handed_over_provider", essential=True),
        # Reviews (decision 0088): a review that changes nothing; one that changes or ends the package
        # is told by the change's or the ending's messages. Funding (decision 0089): the provider
        # invoices each funder for its share, so it must know.
        MessageKind("reviewed_provider"),
        MessageKind("reviewed_person"),
        MessageKind("funding_provider", essential=True),
        MessageKind("funding_person"),
        # Hospital discharge (decision 0097): an in-house team must send carers, or stop; the brokerage
        # team must act when no in-house service had room.
        MessageKind("discharge_referred_service", essential=True),
        MessageKind("discharge_referred_broker"),
        MessageKind("discharge_referred_person"),
        MessageKind("discharge_fallback_unavailable", essential=True),
        MessageKind("discharge_referral_released_service", essential=True),
        MessageKind("exception_requested", essential=True),
        # A bid that takes two approvals (the scheme of delegation, decision 0123) has its first:
        # the brokerage team, where the second approvers are, must act (decision 0140).
        MessageKind("exception_second_approval_needed", essential=True),
        MessageKind("exception_refused_bidder"),
    )
}


@dataclass(frozen=True)
class Message:
    message: str
    role: Role
    recipient_id: str
    context: dict[str, object]  # JSON-able template variables; never a person's details

    @property
    def kind(self) -> str:
        return KIND_OF_ROLE[self.role]


@dataclass(frozen=True)
class Contact:
    kind: str
    recipient_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    webhook_url: str | None = None
    has_webhook_secret: bool = False
    channels: tuple[str, ...] = ()
    opted_out: frozenset[str] = frozenset()
    opted_in: frozenset[str] = frozenset()
    large_print: bool = False
    language: str = "en"

    def address_for(self, channel: str) -> str | None:
        """Where ``channel`` sends to: its field of :data:`ADDRESS_FIELD` (a webhook only with its
        secret), ``log`` for the log, None for a channel not known."""
        if channel == "log":
            return "log"
        field_name = ADDRESS_FIELD.get(channel)
        if field_name is None or (channel == "webhook" and not self.has_webhook_secret):
            return None
        address: str | None = getattr(self, field_name)
        return address


@dataclass(frozen=True)
class Plan:
    outcome: Literal["send", "skip", "fail", "await_contact", "nothing"]
    channels: tuple[tuple[str, str], ...] = ()  # (channel, address)
    reason: str | None = None
    notes: tuple[str, ...] = field(default=())


# The events the notifications service tells people about.
NotifiedEvent = (
    PackagePlaced
    | PackageUnplaced
    | PackageHandedBack
    | OfferMade
    | PackageCancelled
    | PackageReopened
    | PackageStarted
    | PackageEnded
    | PackagePaused
    | PackageResumed
    | ChangeOffered
    | PackageChanged
    | ChangeDeclined
    | ChangeWithdrawn
    | PackageHandedOver
    | PackageReviewed
    | FundingRecorded
    | DischargeReferred
    | DischargeFallbackUnavailable
    | DischargeReferralReleased
    | ExceptionRequested
    | ExceptionFirstApproved
    | ExceptionDecided
)


def _above_rate_bid(
    event: ExceptionRequested | ExceptionFirstApproved, provider_names: dict[str, str]
) -> dict[str, object]:
    """What every message about an above-rate bid says: the package, the bidder, its rate and the
    band rate (pounds per hour)."""
    return {
        "package_id": str(event.package_id),
        "provider_id": event.provider_id,
        "provider_name": provider_names.get(event.provider_id, event.provider_id),
        "hourly_rate": str(event.hourly_rate),
        "band_rate": str(event.band_rate),
    }


def _day(d: dt.date) -> str:
    return f"{d:%A} {d.day} {d:%B %Y}"


def named_providers(event: Envelope) -> list[str]:
    """The providers whose registered names an event's messages use (``provider_names`` of
    :func:`messages_for`): the event's provider, or the one a handed-over package leaves."""
    if isinstance(event, PackageHandedOver):
        return [event.from_provider_id]
    provider_id = getattr(event, "provider_id", None)
    return [provider_id] if provider_id else []


def messages_for(event: Envelope, *, provider_names: dict[str, str], providers_url: str) -> list[Message]:
    """Who is told what about this event (the losing bidders never learn the winner's price)."""
    if isinstance(event, PackagePlaced):
        common: dict[str, object] = {
            "package_id": str(event.package_id),
            "zone": event.zone,
            "band": event.band.value,
            "hours_per_week": hours_text(event.hours_per_week),
            "start_date": _day(event.start_date),
            "urgency": event.urgency.value.replace("_", " "),
        }
        provider_name = provider_names.get(event.provider_id, event.provider_id)
        messages = [
            Message(
                "placement_award",
                "provider",
                event.provider_id,
                common
                | {
                    "hourly_rate": str(event.hourly_rate),
                    "tier": event.tier.value,
                    "offer_round": event.offer_round,
                    # The awarded provider's own route on the provider API (its credential or a
                    # named user's token), not the brokerage team's.
                    "person_link": f"{providers_url.rstrip('/')}/me/packages/{event.package_id}/person",
                },
            ),
            Message(
                "placement_broker",
                "broker",
                event.requested_by,
                common
                | {
                    "provider_id": event.provider_id,
                    "provider_name": provider_name,
                    "hourly_rate": str(event.hourly_rate),
                    "tier": event.tier.value,
                    "offer_round": event.offer_round,
                    "rate_card": event.rate_card,
                },
            ),
            Message("placement_person", "person", str(event.package_id), common | {"provider_name": provider_name}),
        ]
        messages += [
            Message("placement_outcome", "losing_bidder", pid, common)
            for pid in dict.fromkeys(event.losing_provider_ids)
            if pid != event.provider_id
        ]
        return messages
    if isinstance(event, PackageUnplaced):
        return [
            Message(
                "package_unplaced",
                "brokerage_team",
                BROKERAGE_TEAM,
                {
                    "package_id": str(event.package_id),
                    "zone": event.zone,
                    "band": event.band.value,
                    "hours_per_week": hours_text(event.hours_per_week),
                    "urgency": event.urgency.value.replace("_", " "),
                    "reason": reason_words(event.reason),
                    "requested_by": event.requested_by,
                },
            )
        ]
    if isinstance(event, PackageHandedBack):
        context: dict[str, object] = {
            "package_id": str(event.package_id),
            "provider_id": event.provider_id,
            "provider_name": provider_names.get(event.provider_id, event.provider_id),
            "notice_ends_on": _day(event.notice_ends_on),
            "reason": reason_words(event.reason),
            "hours_per_week": hours_text(event.hours_per_week),
            "recorded_by": event.recorded_by,
        }
        return [
            Message("package_handed_back", "brokerage_team", BROKERAGE_TEAM, context),
            Message("handed_back_provider", "provider", event.provider_id, context),
            _to_broker("handed_back_broker", event.requested_by or event.recorded_by, context),
            Message("handed_back_person", "person", str(event.package_id), context),
        ]
    if isinstance(event, PackageCancelled):
        context = {
            "package_id": str(event.package_id),
            "reason": reason_words(event.reason),
            "hours_per_week": hours_text(event.hours_per_week),
            "cancelled_by": event.cancelled_by,
            "cancelled_on": _day(clock.uk_date(event.cancelled_at)),
            "was_placed": event.provider_id is not None,
            "provider_id": event.provider_id or "",
            "provider_name": provider_names.get(event.provider_id, event.provider_id) if event.provider_id else "",
        }
        messages = [
            _to_broker("cancelled_broker", event.requested_by or event.cancelled_by, context),
            Message("cancelled_person", "person", str(event.package_id), context),
        ]
        if event.provider_id:  # placed: the provider loses it, and must not start the care
            messages.insert(0, Message("cancelled_provider", "provider", event.provider_id, context))
        # Still working a hand-back's notice (or due to): each stops too (decision 0159).
        at = 1 if event.provider_id else 0
        messages[at:at] = [Message("cancelled_provider", "provider", p, context) for p in event.notice_provider_ids]
        return messages
    if isinstance(event, PackageReopened):
        context = {
            "package_id": str(event.package_id),
            "provider_id": event.provider_id,
            "provider_name": provider_names.get(event.provider_id, event.provider_id),
            "reason": reason_words(event.reason),
            "hours_per_week": hours_text(event.hours_per_week),
        }
        return [
            Message("reopened_provider", "provider", event.provider_id, context),
            _to_broker("reopened_broker", event.requested_by, context),
            Message("reopened_person", "person", str(event.package_id), context),
        ]
    if isinstance(event, PackageStarted):
        context = {
            "package_id": str(event.package_id),
            "provider_id": event.provider_id,
            "provider_name": provider_names.get(event.provider_id, event.provider_id),
            "started_on": _day(event.started_on),
            "recorded_by": event.recorded_by,
        }
        return [
            Message("started_provider", "provider", event.provider_id, context),
            _to_broker("started_broker", event.requested_by or event.recorded_by, context),
        ]
    if isinstance(event, PackageResumed) and event.reopened_because is not None:
        return []  # brokered again at once: the PackageReopened after it tells everyone (decision 0162)
    if isinstance(event, PackageEnded | PackagePaused | PackageResumed):
        return _pause_or_ending(event, provider_names)
    if isinstance(event, ChangeOffered | PackageChanged | ChangeDeclined | ChangeWithdrawn | PackageHandedOver):
        return _change(event, provider_names)
    if isinstance(event, PackageReviewed):
        return _reviewed(event, provider_names)
    if isinstance(event, FundingRecorded):
        return _funding(event, provider_names)
    if isinstance(event, DischargeReferred | DischargeFallbackUnavailable | DischargeReferralReleased):
        return _discharge(event, provider_names)
    if isinstance(event, ExceptionRequested):
        context = _above_rate_bid(event, provider_names) | {
            "zone": event.zone,
            "band": event.band.value,
            "urgency": event.urgency.value.replace("_", " "),
        }
        return [_to_broker("exception_requested", event.requested_by, context)]
    if isinstance(event, ExceptionFirstApproved):
        context = _above_rate_bid(event, provider_names) | {
            "approved_by": event.approved_by,
            "approver_role": event.approver_role.replace("_", " "),
            "within_limit": event.within_limit,
            "awaiting": event.awaiting,
            "reason": reason_words(event.reason),
            "approved_at": clock.format_uk(event.approved_at, "%H:%M %Z on %A %d %B %Y"),
        }
        return [Message("exception_second_approval_needed", "brokerage_team", BROKERAGE_TEAM, context)]
    if isinstance(event, ExceptionDecided):
        # Approved: the award follows (PackagePlaced tells everyone). Refused: the bidder learns it.
        if event.decision != "rejected" or event.provider_id is None:
            return []
        context = {
            "package_id": str(event.package_id),
            "hourly_rate": str(event.hourly_rate) if event.hourly_rate is not None else "",
            "reason": reason_words(event.reason),
        }
        return [Message("exception_refused_bidder", "provider", event.provider_id, context)]
    if isinstance(event, OfferMade):
        spec = event.package
        return [
            Message(
                "new_offer",
                "provider",
                pid,
                {
                    "package_id": str(event.package_id),
                    "zone": spec.zone,
                    "band": spec.band.value,
                    "postcode_district": spec.postcode_district,
                    "hours_per_week": hours_text(spec.hours_per_week),
                    "urgency": spec.urgency.value.replace("_", " "),
                    "start_date": _day(spec.start_date),
                    "band_rate": str(event.band_rate),
                    "offer_round": event.offer_round,
                    "tier": event.tier.value,
                    "window_closes_at": clock.format_uk(event.window_closes_at, "%H:%M %Z on %A %d %B %Y"),
                },
            )
            for pid in dict.fromkeys(event.provider_ids)
        ]
    return []


def _pause_or_ending(
    event: PackageEnded | PackagePaused | PackageResumed, provider_names: dict[str, str]
) -> list[Message]:
    """An ending, a pause or a resume: the provider holding the package, the broker who requested it
    and the person's family contact are each told once (decision record 0078)."""
    context: dict[str, object] = {
        "package_id": str(event.package_id),
        "provider_id": event.provider_id,
        "provider_name": provider_names.get(event.provider_id, event.provider_id),
        "hours_per_week": hours_text(event.hours_per_week),
    }
    if isinstance(event, PackageEnded):
        name, broker = "ended", event.requested_by or event.ended_by
        context |= {
            "reason": reason_words(event.reason),
            "died": event.reason == "died",
            "hold_ran_out": event.reason == "hospital_stay_exceeded_hold",
            "effective_date": _day(event.effective_date),
            "ended_by": event.ended_by,
        }
    elif isinstance(event, PackagePaused):
        name, broker = "paused", event.requested_by or event.paused_by
        context |= {
            "reason": reason_words(event.reason),
            "hospital": event.reason == "admitted_to_hospital",
            "paused_on": _day(event.paused_on),
            "hold_until": clock.format_uk(event.hold_expires_at, "%H:%M %Z on %A %d %B %Y"),
            "paid_during_hold": event.paid_during_hold,
            "paused_by": event.paused_by,
        }
    else:
        name, broker = "resumed", event.requested_by or event.resumed_by
        context |= {
            "paused_on": _day(event.paused_on),
            "resumed_on": _day(event.resumed_on),
            "resumed_by": event.resumed_by,
        }
    return [
        Message(f"{name}_provider", "provider", event.provider_id, context),
        _to_broker(f"{name}_broker", broker, context),
        Message(f"{name}_person", "person", str(event.package_id), context),
    ]


def _visits(event: ChangeOffered | PackageChanged) -> str:
    v = event.package.visits
    carers = "two carers" if v.carers_per_call > 1 else "one carer"
    return f"{v.calls_per_day} calls a day of {v.minutes_per_call} minutes, {carers}, {v.days_per_week} days a week"


def _change(
    event: ChangeOffered | PackageChanged | ChangeDeclined | ChangeWithdrawn | PackageHandedOver,
    provider_names: dict[str, str],
) -> list[Message]:
    """A change to a running package (decision record 0082), each party told once: offered - the
    provider holding it, to answer; accepted - that provider, the broker who requested the package and
    the person's family contact; declined or unanswered - the provider (carry on until told) and the
    broker (re-brokered); withdrawn - the provider alone (the broker withdrew it by pausing, ending or
    re-brokering the package, told of that by its own message; the family was never told of the
    change offered; decision 0158); handed over - the provider that carried on (stop when the new one
    starts; PackagePlaced tells the new provider, the broker and the person)."""
    if isinstance(event, ChangeWithdrawn):
        withdrawn: dict[str, object] = {
            "package_id": str(event.package_id),
            "provider_name": provider_names.get(event.provider_id, event.provider_id),
            "previous_hours_per_week": hours_text(event.previous_hours_per_week),
            "hours_per_week": hours_text(event.hours_per_week),
            "because": reason_words(event.because),
        }
        return [Message("change_withdrawn_provider", "provider", event.provider_id, withdrawn)]
    if isinstance(event, PackageHandedOver):
        context: dict[str, object] = {
            "package_id": str(event.package_id),
            "provider_name": provider_names.get(event.from_provider_id, event.from_provider_id),
            "hours_per_week": hours_text(event.previous_hours_per_week),
            "handed_over_on": _day(event.handed_over_on),
            "last_day": _day(event.handed_over_on - dt.timedelta(days=1)),
        }
        return [Message("handed_over_provider", "provider", event.from_provider_id, context)]
    context = {
        "package_id": str(event.package_id),
        "provider_id": event.provider_id,
        "provider_name": provider_names.get(event.provider_id, event.provider_id),
        "previous_hours_per_week": hours_text(event.previous_hours_per_week),
        "reason": reason_words(event.reason),
    }
    if isinstance(event, ChangeOffered):
        context |= {
            "hours_per_week": hours_text(event.package.hours_per_week),
            "visits": _visits(event),
            "needs": ", ".join(n.value.replace("_", " ") for n in event.package.needs),
            "effective_date": _day(event.effective_date),
            "window_closes_at": clock.format_uk(event.window_closes_at, "%H:%M %Z on %A %d %B %Y"),
        }
        return [Message("change_offered_provider", "provider", event.provider_id, context)]
    if isinstance(event, PackageChanged):
        context |= {
            "hours_per_week": hours_text(event.hours_per_week),
            "visits": _visits(event),
            "effective_date": _day(event.effective_date),
            "more": event.hours_per_week > event.previous_hours_per_week,
            "changed_by": event.changed_by,
        }
        return [
            Message("changed_provider", "provider", event.provider_id, context),
            _to_broker("changed_broker", event.requested_by or event.changed_by, context),
            Message("changed_person", "person", str(event.package_id), context),
        ]
    context |= {
        "hours_per_week": hours_text(event.hours_per_week),
        "outcome": reason_words(event.outcome),
        "decline_reason": reason_words(event.decline_reason) if event.decline_reason else "",
    }
    return [
        Message("change_declined_provider", "provider", event.provider_id, context),
        _to_broker("change_declined_broker", event.requested_by, context),
    ]


def _reviewed(event: PackageReviewed, provider_names: dict[str, str]) -> list[Message]:
    """A review (decision record 0088). One that changes nothing tells the provider and the person's
    family contact, once each. One that changes the package (hours, or equipment in place of visits)
    or ends it tells nobody itself: its ChangeOffered, PackageChanged or PackageEnded does, so nobody
    is told of one review twice."""
    if event.outcome != "no_change":
        return []
    context: dict[str, object] = {
        "package_id": str(event.package_id),
        "provider_id": event.provider_id,
        "provider_name": provider_names.get(event.provider_id, event.provider_id),
        "hours_per_week": hours_text(event.hours_per_week),
        "reviewed_on": _day(event.reviewed_on),
        "next_review_due_on": _day(event.next_review_due_on) if event.next_review_due_on else "",
        "reviewed_by": event.reviewed_by,
        "paused": event.paused,  # no "carry on visiting" while the person is in hospital
    }
    return [
        Message("reviewed_provider", "provider", event.provider_id, context),
        Message("reviewed_person", "person", str(event.package_id), context),
    ]


def _funding(event: FundingRecorded, provider_names: dict[str, str]) -> list[Message]:
    """A package's funding recorded (decision record 0089): the provider holding it (it invoices each
    funder its share), any other provider still paid under its agreements, and the person's family
    contact (who pays, and any top-up), once each per revision; published again for a new provider
    placed with the package, that provider alone (decision record 0161)."""
    periods = [
        {
            "effective_from": _day(p.effective_from),
            # Decision 0121: the calls a funder pays whole come first ("call 1 of each day: ..."),
            # then the shares of the rest.
            "funders": "; ".join(
                [f"call {c.call} of each day: {FUNDER_WORDS.get(c.funder, c.funder)}" for c in p.calls]
                + [
                    ("the rest: " if p.calls else "")
                    + ", ".join(f"{FUNDER_WORDS.get(s.funder, s.funder)} {s.percent.normalize():f}%" for s in p.shares)
                ]
            ),
            "self_funded": p.funder == "self_funder",
        }
        for p in event.periods
    ]
    context: dict[str, object] = {
        "package_id": str(event.package_id),
        "revision": event.revision,
        "periods": periods,
        "top_up": FUNDER_WORDS.get(event.top_up.paid_by, event.top_up.paid_by) if event.top_up else "",
        "provider_name": provider_names.get(event.provider_id, event.provider_id) if event.provider_id else "",
    }
    providers = [p for p in dict.fromkeys([event.provider_id, *event.other_provider_ids]) if p]
    told = [Message("funding_provider", "provider", p, context) for p in providers]
    if event.for_new_provider:  # the record unchanged: the new provider alone learns it (decision 0161)
        return told[:1]
    return [*told, Message("funding_person", "person", str(event.package_id), context)]


def in_house_team(service: str) -> str:
    """The notifications recipient of a council in-house service's team (deploy/reference/contacts.yaml)."""
    return "in-house-" + service.replace("_", "-")


def _discharge(
    event: DischargeReferred | DischargeFallbackUnavailable | DischargeReferralReleased, provider_names: dict[str, str]
) -> list[Message]:
    """Hospital discharge (decision record 0097). A referral: the in-house team taking the person (it
    sends carers from ``referred_on``), the broker who requested the package and the person's family
    contact, once each. No room in any in-house service: the brokerage team, once (the broker's work
    queue shows it too). A release: the in-house team, once (it stops; the provider's placement tells
    everyone else). The DischargeRequested itself tells nobody: the Hub's broker made it."""
    context: dict[str, object] = {
        "package_id": str(event.package_id),
        "hours_per_week": hours_text(event.hours_per_week),
    }
    if isinstance(event, DischargeReferred):
        context |= {
            "service": reason_words(event.service),
            "step": reason_words(event.step),
            "fallback": event.step == "fallback",
            "referred_on": _day(event.referred_on),
            "medically_fit_on": _day(event.medically_fit_on),
            "days_after_medically_fit": event.days_after_medically_fit,
        }
        return [
            Message("discharge_referred_service", "brokerage_team", in_house_team(event.service), context),
            _to_broker("discharge_referred_broker", event.requested_by, context),
            Message("discharge_referred_person", "person", str(event.package_id), context),
        ]
    if isinstance(event, DischargeFallbackUnavailable):
        context |= {
            "services_full": ", ".join(reason_words(s) for s in event.services_full),
            "medically_fit_on": _day(event.medically_fit_on),
            "requested_by": event.requested_by,
        }
        return [Message("discharge_fallback_unavailable", "brokerage_team", BROKERAGE_TEAM, context)]
    context |= {
        "service": reason_words(event.service),
        "released_on": _day(event.released_on),
        "provider_name": provider_names.get(event.provider_id, event.provider_id) if event.provider_id else "",
    }
    return [Message("discharge_referral_released_service", "brokerage_team", in_house_team(event.service), context)]


def _to_broker(message: str, broker: str | None, context: dict[str, object]) -> Message:
    """To the broker who requested the package; to the brokerage team when that is not known
    (an event written before it carried ``requested_by``)."""
    if broker:
        return Message(message, "broker", broker, context)
    return Message(message, "brokerage_team", BROKERAGE_TEAM, context)


def plan(message: Message, contact: Contact | None, configured: frozenset[str]) -> Plan:
    """How this message reaches this recipient, given the channels this installation can use."""
    kind = MESSAGES[message.message]
    if contact is None:
        # Optional messages go only to those who asked; everyone else may still register.
        return Plan("nothing") if kind.optional else Plan("await_contact", reason="no contact registered")
    if kind.optional and message.message not in contact.opted_in:
        return Plan("nothing")
    if not kind.essential and message.message in contact.opted_out:
        return Plan("skip", reason=f"the recipient opted out of {message.message}")
    chosen, notes = [], []
    for channel in contact.channels:
        address = contact.address_for(channel)
        if channel not in configured:
            notes.append(f"{channel} is not configured in this installation")
        elif not address:
            notes.append(f"{channel}: no {_needs(channel)} registered")
        else:
            chosen.append((channel, address))
    if not chosen:
        why = "; ".join(notes) if notes else "no channel chosen"
        return Plan("fail", reason=f"no usable channel ({why})", notes=tuple(notes))
    return Plan("send", channels=tuple(chosen), notes=tuple(notes))


def _needs(channel: str) -> str:
    return {
        "email": "email address",
        "notify_email": "email address",
        "notify_sms": "mobile number",
        "webhook": "webhook URL and secret",
    }.get(channel, "address")


def scrub(text: str, *addresses: str | None) -> str:
    """An error message fit for an event: the recipient's address taken out."""
    for address in addresses:
        if address:
            text = text.replace(address, "<address>")
    return text[:1000]
