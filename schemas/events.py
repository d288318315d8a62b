"""Event contracts: every message the three services put on Kafka.

Each event is one pydantic model: the envelope fields (event id, type, schema version,
occurred-at, correlation id, causation id, producer) followed by its own fields. The
``event_type`` is a ``Literal`` so that :data:`AnyEvent` parses any message into the right
class, and an unknown type or schema version fails validation (and goes to dead letters).

Privacy is part of the contract: no event carries a person's name, address, contact
details, NHS number, date of birth or care notes. Those stay in the brokerage schema.

No free text either: nothing people type (a cancel reason, a decline's words, an error
message) goes on an event, only codes from the fixed vocabularies in ``schemas/vocabulary.py``;
every string field is an id, a code, a date or an enumerated value
(``tests/unit/test_contracts.py`` walks every model to keep it so).

Changing an event: bump its ``schema_version`` here, move the old model to
``schemas/legacy.py`` with an ``upgrade()`` to the new one, keep the old samples in
``schemas/samples/`` parsing, add a sample of the new version, and re-export the JSON Schemas
(``python -m schemas.export``); ``tests/unit/test_contracts.py`` fails until you do. Consumers
read every version: :func:`parse_event` upgrades an old one, so handlers see the current model.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError, model_validator

from schemas.fields import DIGITS_0_TO_9
from schemas.vocabulary import (
    AgreementReason,
    AgreementStatus,
    Band,
    CancelReason,
    CareNeed,
    ChangeOutcome,
    ChangeReason,
    ChangeWithdrawnBecause,
    ComplaintTheme,
    DeclineReason,
    EndReason,
    ExceptionDecisionReason,
    Funder,
    Funding,
    HandBackReason,
    InHouseService,
    NotificationFailure,
    PauseReason,
    Payer,
    QualityChange,
    ReferralStep,
    ReopenReason,
    ReviewOutcome,
    RiskReason,
    TechnologyEnabledCare,
    Tier,
    TopUpPayer,
    UnplacedReason,
    Urgency,
)

Producer = Literal["brokerage", "providers", "notifications"]
Money = Annotated[Decimal, Field(max_digits=8, decimal_places=2, ge=0), DIGITS_0_TO_9]
PROVIDER_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,63}$"
ProviderId = Annotated[str, Field(pattern=PROVIDER_ID_PATTERN)]
ZoneId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]
# A member of staff as the services name them (a console username, e.g. broker.amy, or a
# system's name, e.g. schedule): an id, never a sentence.
STAFF_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"
StaffId = Annotated[str, Field(pattern=STAFF_ID_PATTERN, max_length=100)]
# A role's name as the permission table and the scheme of delegation spell it: a code.
RoleCode = Annotated[str, Field(pattern=r"^[a-z][a-z_]{1,39}$")]
# A hospital and a ward as the Discharge Hub codes them (deploy/reference/discharge.yaml): codes, never a name.
HospitalCode = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,39}$")]
WardCode = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,15}$")]
# The national discharge pathways: 0 home with no new support, 1 home with support (000:65-66),
# 2 a bedded rehabilitation setting, 3 a care home.
DischargePathway = Annotated[int, Field(ge=0, le=3)]
RateCardVersion = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
# Who a notification was for: a provider id, a staff id, brokerage-team, or the package id (the person).
RecipientId = Annotated[str, Field(pattern=STAFF_ID_PATTERN, max_length=100)]
MessageName = Literal[
    "placement_award",
    "placement_broker",
    "placement_person",
    "placement_outcome",
    "package_unplaced",
    "package_handed_back",
    "new_offer",
    "cancelled_provider",
    "cancelled_broker",
    "cancelled_person",
    "handed_back_provider",
    "handed_back_broker",
    "handed_back_person",
    "reopened_provider",
    "reopened_broker",
    "reopened_person",
    "started_provider",
    "started_broker",
    "ended_provider",
    "ended_broker",
    "ended_person",
    "paused_provider",
    "paused_broker",
    "paused_person",
    "resumed_provider",
    "resumed_broker",
    "resumed_person",
    "change_offered_provider",
    "changed_provider",
    "changed_broker",
    "changed_person",
    "change_declined_provider",
    "change_declined_broker",
    "change_withdrawn_provider",
    "handed_over_provider",
    "reviewed_provider",
    "reviewed_person",
    "funding_provider",
    "funding_person",
    "discharge_referred_service",
    "discharge_referred_broker",
    "discharge_referred_person",
    "discharge_fallback_unavailable",
    "discharge_referral_released_service",
    "exception_requested",
    "exception_second_approval_needed",
    "exception_refused_bidder",
]
DeliveryChannel = Literal["email", "notify_email", "notify_sms", "webhook", "log", "none"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Contract(BaseModel):
    # Contracts are strict about what they accept: a field nobody declared is a mistake
    # on the producing side, not something to pass along silently.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(Contract):
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    if TYPE_CHECKING:  # each event pins its own version (a Literal); to a type checker, a number
        schema_version: int = 1
    else:
        schema_version: Literal[1] = 1
    occurred_at: dt.datetime = Field(default_factory=_now)
    correlation_id: uuid.UUID = Field(
        description="The journey this event belongs to: the package id for package events."
    )
    causation_id: uuid.UUID | None = Field(default=None, description="The event id that caused this one, if any.")
    producer: Producer

    @property
    def key(self) -> str:
        """The Kafka message key: events of one package share a partition, so stay in order."""
        return str(self.correlation_id)


# ---- parts shared by several events ------------------------------------------------------


class VisitPattern(Contract):
    calls_per_day: StrictInt = Field(ge=1, le=6)
    minutes_per_call: StrictInt = Field(ge=15, le=180)
    carers_per_call: StrictInt = Field(ge=1, le=2, description="2 = double-handed calls.")
    days_per_week: StrictInt = Field(default=7, ge=1, le=7)

    @property
    def double_handed(self) -> bool:
        return self.carers_per_call > 1

    @property
    def care_hours_per_week(self) -> Decimal:
        """Carer hours a week the visits need (double-handed calls count both carers)."""
        minutes = self.calls_per_day * self.minutes_per_call * self.carers_per_call * self.days_per_week
        return (Decimal(minutes) / Decimal(60)).quantize(Decimal("0.01"))


class PackageSpec(Contract):
    """What providers are told about a package: enough to decide, nothing that identifies the person."""

    zone: ZoneId
    band: Band
    postcode_district: str = Field(pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]?$")
    hours_per_week: Decimal = Field(gt=0, le=168, max_digits=5, decimal_places=2)
    visits: VisitPattern
    needs: list[CareNeed]
    urgency: Urgency
    start_date: dt.date
    funding: Funding = Funding.council


# ---- brokerage -> everyone (topic brokerage.packages) ------------------------------------


class PackageRequested(Envelope):
    event_type: Literal["PackageRequested"] = "PackageRequested"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    package: PackageSpec
    requested_at: dt.datetime


class OfferMade(Envelope):
    """A package offered to the providers of one tier; they answer with a bid or a decline."""

    event_type: Literal["OfferMade"] = "OfferMade"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    offer_round: int = Field(ge=1)
    tier: Tier
    provider_ids: list[ProviderId] = Field(min_length=1)
    package: PackageSpec
    band_rate: Money
    window_closes_at: dt.datetime


class BidRank(Contract):
    """A bid's place in the ranking that decided an award (1 = ranked first). No price: a provider
    is told its own rank, never another's rate."""

    provider_id: ProviderId
    rank: int = Field(ge=1)


class PackagePlaced(Envelope):
    """Awarded: the provider now holds the package (until a cancellation, hand-back or re-brokering).
    v2: ``rate_card`` and ``requested_by`` are ids (patterns), ``losing_provider_ids`` only those
    offered in this cycle of offers. v3: ``bid_ranks``, each bid's rank in the deciding round, so
    that a losing bidder can be told its rank."""

    event_type: Literal["PackagePlaced"] = "PackagePlaced"
    schema_version: Literal[3] = 3
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    offer_round: int
    tier: Tier
    hourly_rate: Money
    hours_per_week: Decimal
    start_date: dt.date
    zone: ZoneId
    band: Band
    urgency: Urgency
    rate_card: RateCardVersion = Field(description="Version of the rate card the award was judged against.")
    requested_by: StaffId = Field(description="Staff id of the broker who requested the package.")
    losing_provider_ids: list[ProviderId] = Field(
        default_factory=list, description="Offered the package in this cycle of offers, and not awarded it."
    )
    bid_ranks: list[BidRank] = Field(
        default_factory=list,
        description="Every bid of the round that decided the award, with its rank (the winner's among them; "
        "empty for an event older than v3).",
    )
    placed_at: dt.datetime


class PackageUnplaced(Envelope):
    """No acceptable bid on any tier: the package joins the unplaced queue (the waiting list).
    v2: ``reason`` is a code."""

    event_type: Literal["PackageUnplaced"] = "PackageUnplaced"
    schema_version: Literal[2] = 2
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    zone: ZoneId
    band: Band
    urgency: Urgency
    hours_per_week: Decimal
    reason: UnplacedReason
    requested_by: StaffId
    unplaced_at: dt.datetime


class ExceptionRequested(Envelope):
    """Only bids above the band rate came in: a broker must approve paying more, or refuse.
    v2: ``requested_by`` is a staff id."""

    event_type: Literal["ExceptionRequested"] = "ExceptionRequested"
    schema_version: Literal[2] = 2
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId = Field(description="The best-ranked bid above the rate.")
    hourly_rate: Money
    band_rate: Money
    zone: ZoneId
    band: Band
    urgency: Urgency
    requested_by: StaffId
    requested_at: dt.datetime


class ExceptionDecided(Envelope):
    """A broker's decision on paying above the band rate: who, when, why (a code; the broker's own
    words stay in the brokerage's exceptions table). v2: ``reason`` is a code, and the bid decided on
    is named (``provider_id``, ``hourly_rate``) so its bidder can be told of a refusal."""

    event_type: Literal["ExceptionDecided"] = "ExceptionDecided"
    schema_version: Literal[2] = 2
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    decision: Literal["approved", "rejected"]
    decided_by: StaffId
    reason: ExceptionDecisionReason
    provider_id: ProviderId | None = Field(default=None, description="The best-ranked bid above the rate.")
    hourly_rate: Money | None = None
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    decided_at: dt.datetime


class ExceptionFirstApproved(Envelope):
    """The first of two approvals of paying above the band rate (the scheme of delegation's second
    approver, decision record 0123): who approved, under which role's limit (per cent above the band
    rate; null: no limit), and what the exception now waits for. The package stays awaiting
    approval; ExceptionDecided follows with the second approval, or a refusal. No words: the
    approver's notes stay in the brokerage."""

    event_type: Literal["ExceptionFirstApproved"] = "ExceptionFirstApproved"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId = Field(description="The bid approved: the best-ranked bid above the rate.")
    hourly_rate: Money
    band_rate: Money
    approved_by: StaffId
    approver_role: RoleCode = Field(description="The approver's role whose limit counted (the highest of theirs).")
    approver_limit_percent: Decimal | None = Field(
        default=None, description="That role's limit, per cent above the band rate; null: no limit."
    )
    within_limit: bool = Field(description="Whether the approver's limit covers the bid.")
    awaiting: Literal["approver_within_limit", "second_approver"] = Field(
        description="approver_within_limit: a second approver whose limit covers the bid; second_approver: anyone "
        "else in the scheme (the bid takes two approvals)."
    )
    reason: ExceptionDecisionReason
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    approved_at: dt.datetime


class PackageCancelled(Envelope):
    """A broker cancelled the package before it started; a provider it was placed with is released.
    v2: ``reason`` is a code (the broker's words stay in the brokerage); ``requested_by`` added, so
    the broker who asked for the package can be told."""

    event_type: Literal["PackageCancelled"] = "PackageCancelled"
    schema_version: Literal[2] = 2
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    reason: CancelReason
    cancelled_by: StaffId
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    provider_id: ProviderId | None = Field(
        default=None,
        description="The provider told to stop: the one it had been placed with, or else one still visiting (carrying "
        "on after a declined change, or working a hand-back's notice: decision record 0159), if any.",
    )
    notice_provider_ids: list[ProviderId] = Field(
        default_factory=list,
        max_length=10,
        description="Providers still working a hand-back's notice on the package (or due to, placed before it was "
        "handed back again) beside the one named in ``provider_id``: each stops too, paid to the day of the "
        "cancellation (decision record 0159).",
    )
    hours_per_week: Decimal
    cancelled_at: dt.datetime


class PackageHandedBack(Envelope):
    """The provider gives the package back, with notice; the package is reopened with priority.
    v2: ``reason`` is a code; ``requested_by`` added."""

    event_type: Literal["PackageHandedBack"] = "PackageHandedBack"
    schema_version: Literal[2] = 2
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    notice_ends_on: dt.date
    reason: HandBackReason
    hours_per_week: Decimal
    recorded_by: StaffId
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    recorded_at: dt.datetime


class PackageReopened(Envelope):
    """The provider a package was placed with was suspended or left the framework: the package is
    taken from it and brokered again with priority and continuity (not a hand-back: it does not
    count against the provider's quality rating). v2: ``reason`` is a code; ``requested_by`` added."""

    event_type: Literal["PackageReopened"] = "PackageReopened"
    schema_version: Literal[2] = 2
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    reason: ReopenReason
    hours_per_week: Decimal
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    reopened_at: dt.datetime


class PackageStarted(Envelope):
    """Care began: the end of the wait the brokerage evidences. v2: ``recorded_by`` is a staff id;
    ``requested_by`` added."""

    event_type: Literal["PackageStarted"] = "PackageStarted"
    schema_version: Literal[2] = 2
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    started_on: dt.date
    recorded_by: StaffId
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    recorded_at: dt.datetime


class PackageEnded(Envelope):
    """A running package ended, for good: the provider's hours are released on ``effective_date``
    (a UK date; the provider cares for the person until the day before). Decision record 0078."""

    event_type: Literal["PackageEnded"] = "PackageEnded"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    reason: EndReason
    effective_date: dt.date = Field(description="The first day without care (UK date): hours are released on it.")
    hours_per_week: Decimal
    ended_by: StaffId = Field(description="Staff id, or ``schedule`` when a hospital hold ran out.")
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    was_paused: bool = Field(default=False, description="Ended while paused (in hospital or respite).")
    ended_at: dt.datetime


class PackagePaused(Envelope):
    """Care stopped for a while (a hospital admission, a respite stay): the provider keeps the package
    and its hours until ``hold_expires_at``; with no resume by then the package ends
    (``hospital_stay_exceeded_hold``). ``paid_during_hold``: whether the council pays the provider for
    the hold (configuration), for finance and reporting."""

    event_type: Literal["PackagePaused"] = "PackagePaused"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    reason: PauseReason
    paused_on: dt.date = Field(description="The first day without visits (UK date).")
    hold_expires_at: dt.datetime
    paid_during_hold: bool
    hours_per_week: Decimal
    paused_by: StaffId
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    paused_at: dt.datetime


class PackageResumed(Envelope):
    """The person is home again: visits restart on ``resumed_on`` (a UK date) with the same provider,
    unless ``reopened_because`` is set."""

    event_type: Literal["PackageResumed"] = "PackageResumed"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    paused_on: dt.date
    resumed_on: dt.date
    hours_per_week: Decimal
    resumed_by: StaffId
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    resumed_at: dt.datetime
    reopened_because: ReopenReason | None = Field(
        default=None,
        description=(
            "Set when the provider holding the package was suspended or left the framework while it was"
            " paused: the package is brokered again from resumed_on, and the PackageReopened that follows"
            " in the same transaction tells everyone; this event tells no one (decision 0162)."
        ),
    )


class ChangeOffered(Envelope):
    """A change to a running package offered to the provider holding it (decision record 0082): the
    new ``package`` (hours, visit pattern, needs), from ``effective_date`` (UK). It answers with
    ChangeAnswered - its adapter's rules, or through the provider API - before ``window_closes_at``;
    declined or unanswered, the package is re-brokered with the new pattern while it carries on."""

    event_type: Literal["ChangeOffered"] = "ChangeOffered"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    change_id: uuid.UUID
    provider_id: ProviderId
    package: PackageSpec = Field(description="The package as it would be after the change.")
    previous_hours_per_week: Decimal
    reason: ChangeReason
    effective_date: dt.date = Field(description="The first day of the new pattern (UK date).")
    window_closes_at: dt.datetime
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")


class PackageChanged(Envelope):
    """The provider holding the package accepted a change: from ``effective_date`` (UK) the package
    is ``package``; its committed hours move by ``hours_per_week - previous_hours_per_week``."""

    event_type: Literal["PackageChanged"] = "PackageChanged"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    change_id: uuid.UUID
    provider_id: ProviderId
    package: PackageSpec
    previous_hours_per_week: Decimal
    hours_per_week: Decimal
    reason: ChangeReason
    effective_date: dt.date
    discussed_with_person: bool = Field(description="Discussed with the person or family (required for a reduction).")
    changed_by: StaffId = Field(description="Who asked for the change (the verified token's user).")
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    changed_at: dt.datetime


class ChangeDeclined(Envelope):
    """The provider holding the package declined a change, or let its window close: the package is
    re-brokered with the new pattern (continuity flagged), and ``provider_id`` carries on at the old
    hours until a new provider's placement replaces its own (decision record 0082)."""

    event_type: Literal["ChangeDeclined"] = "ChangeDeclined"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    change_id: uuid.UUID
    provider_id: ProviderId
    outcome: ChangeOutcome
    decline_reason: DeclineReason | None = None
    previous_hours_per_week: Decimal
    hours_per_week: Decimal
    reason: ChangeReason
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    declined_at: dt.datetime


class ChangeWithdrawn(Envelope):
    """A change still awaiting the answer of the provider holding the package was withdrawn by the
    brokerage because the package was paused, ended, handed back or re-brokered meanwhile (``because``):
    the provider may no longer accept or decline it, and is told. Its hours stay as they were."""

    event_type: Literal["ChangeWithdrawn"] = "ChangeWithdrawn"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    change_id: uuid.UUID
    provider_id: ProviderId
    because: ChangeWithdrawnBecause
    hours_per_week: Decimal = Field(description="The hours the change had offered (carer hours a week).")
    previous_hours_per_week: Decimal = Field(description="The package's hours, which stay (carer hours a week).")
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    withdrawn_at: dt.datetime


class PackageHandedOver(Envelope):
    """A package re-brokered after its provider declined a change has a new provider: the provider
    that carried on at the old hours (``from_provider_id``) stops the day before ``handed_over_on``,
    the new placement's start; its placement ends now and its hours are released (decision record
    0082). Emitted just before the new award's PackagePlaced."""

    event_type: Literal["PackageHandedOver"] = "PackageHandedOver"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    from_provider_id: ProviderId
    to_provider_id: ProviderId
    previous_hours_per_week: Decimal = Field(description="The hours the previous provider carried on at.")
    hours_per_week: Decimal
    handed_over_on: dt.date = Field(description="The new provider's first day (UK date).")
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    handed_over_at: dt.datetime


class PackageReviewed(Envelope):
    """A running package was reviewed (decision record 0088): the ``outcome`` on ``reviewed_on`` (a UK
    date) by ``reviewed_by`` (the verified token's user). ``changed`` and ``technology_enabled_care``
    come with the change offered to the provider (``change_id``; ChangeOffered follows), ``ended`` with
    the ending (PackageEnded follows). ``next_review_due_on``: when the next review falls due (none
    once ended)."""

    event_type: Literal["PackageReviewed"] = "PackageReviewed"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    review_id: uuid.UUID
    provider_id: ProviderId
    outcome: ReviewOutcome
    due_on: dt.date | None = Field(default=None, description="When this review was due (UK date).")
    reviewed_on: dt.date = Field(description="The day of the review (UK date).")
    change_id: uuid.UUID | None = Field(default=None, description="The change offered, for a change or equipment.")
    technology: list[TechnologyEnabledCare] = Field(
        default_factory=list, description="Equipment taking the place of some visits (technology-enabled care)."
    )
    next_review_due_on: dt.date | None = Field(description="When the next review falls due (UK date); none if ended.")
    hours_per_week: Decimal
    reviewed_by: StaffId
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    reviewed_at: dt.datetime
    paused: bool = Field(
        default=False,
        description=(
            "The package was paused (a hospital stay) when reviewed: its visits restart only when it"
            " resumes, and nobody is told to carry on visiting (found by an attack)."
        ),
    )


class FundingShare(Contract):
    """One funder's share of a period's cost, in per cent."""

    funder: Funder
    percent: Decimal = Field(gt=0, le=100, max_digits=5, decimal_places=2)


class CallFunding(Contract):
    """A daily call of the visit pattern paid whole by one funder (decision record 0121): ``call`` 1
    is the first call of each day, in time order (say the NHS paying the morning medication call)."""

    call: int = Field(ge=1, le=6, description="The call of each day, 1 = the first, in time order.")
    funder: Funder


class FundingPeriod(Contract):
    """Who pays from ``effective_from`` (a UK date) until the next period's: ``funder``, and each
    funder's share (one share of 100% unless joint). The shares always add up to 100%. v2 (decision
    record 0121): ``calls`` - daily calls paid whole by a funder other than the period's; the shares
    then split the rest of the week (a call is 1 / calls a day of the week's cost)."""

    effective_from: dt.date
    funder: Funder
    shares: list[FundingShare] = Field(min_length=1)
    calls: list[CallFunding] = Field(default_factory=list, max_length=5)

    @model_validator(mode="after")
    def _shares_make_the_whole(self) -> FundingPeriod:
        total = sum((s.percent for s in self.shares), Decimal(0))
        if total != 100:
            raise ValueError(f"the shares add up to {total}%, not 100%")
        if any(s.funder is Funder.joint for s in self.shares):
            raise ValueError("a share names a funder, never joint")
        if self.funder is not Funder.joint and [s.funder for s in self.shares] != [self.funder]:
            raise ValueError("a period with one funder has that funder's share of 100%")
        numbers = [c.call for c in self.calls]
        if len(set(numbers)) != len(numbers):
            raise ValueError("a call is named once")
        if any(c.funder is Funder.joint or c.funder is self.funder for c in self.calls):
            raise ValueError("a call is paid by one funder other than the period's, never joint")
        return self


class TopUp(Contract):
    """The person chose a provider above the band rate: ``paid_by`` pays the difference (a top-up),
    not the council (which pays the difference only for an above-rate exception it approved)."""

    paid_by: TopUpPayer


class FundingRecorded(Envelope):
    """A package's funding, whole (decision record 0089): the ``periods`` in date order (each runs until
    the next one's ``effective_from``; the last while the package lasts) and any ``top_up``. Revision
    ``revision`` replaces every earlier one. ``provider_id``: the provider holding the package, if any
    (it invoices each funder for its share). v2: a period's ``calls`` paid by a funder of their own
    (decision record 0121)."""

    event_type: Literal["FundingRecorded"] = "FundingRecorded"
    schema_version: Literal[2] = 2
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    revision: int = Field(ge=1)
    periods: list[FundingPeriod] = Field(min_length=1)
    top_up: TopUp | None = None
    provider_id: ProviderId | None = None
    other_provider_ids: list[ProviderId] = Field(
        default_factory=list,
        max_length=10,
        description="Other providers still paid under the package's agreements, whose split the record changes "
        "(one working a hand-back's notice, or carrying on after a declined change): told too (decision record 0161).",
    )
    for_new_provider: bool = Field(
        default=False,
        description="The record unchanged, published again because a new provider (``provider_id``) now holds the "
        "package: only that provider is told who pays (decision record 0161).",
    )
    recorded_by: StaffId
    requested_by: StaffId | None = Field(default=None, description="The broker who requested the package.")
    recorded_at: dt.datetime

    @model_validator(mode="after")
    def _periods_in_order(self) -> FundingRecorded:
        days = [p.effective_from for p in self.periods]
        if any(later <= earlier for earlier, later in itertools.pairwise(days)):
            raise ValueError("the periods' effective_from dates must rise")
        return self


# ---- hospital discharge (decision record 0097) -------------------------------------------


class DischargeRequested(Envelope):
    """A package requested by the Discharge Hub for someone leaving hospital (decision record 0097):
    the ``hospital`` and ``ward`` codes (no personal data), the discharge ``pathway``, the day the
    person became medically fit (``medically_fit_on``, a UK date: the KPI counts the days from it,
    000:66-68), whether the Hub saw reablement potential, and ``fallback_due_at``: if no provider
    has been found by then, the package is referred to the council's service of last resort.
    Emitted with PackageRequested; any referral to reablement first follows (DischargeReferred)."""

    event_type: Literal["DischargeRequested"] = "DischargeRequested"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    hospital: HospitalCode
    ward: WardCode
    pathway: DischargePathway
    medically_fit_on: dt.date
    reablement_potential: bool
    nhs_funded_weeks: int = Field(ge=0, le=8, description="Weeks of NHS discharge funding from the start.")
    zone: ZoneId
    hours_per_week: Decimal
    fallback_due_at: dt.datetime
    requested_by: StaffId
    requested_at: dt.datetime


class DischargeReferred(Envelope):
    """A hospital discharge referred to one of the council's in-house services (decision record 0097):
    ``step`` says why - reablement first (002:1767), or the fallback at the deadline with no provider
    found (000:236-238). The service covers the care from ``referred_on`` (a UK date; never before
    the medically-fit date) until a provider's care starts; the package stays on the market.
    ``days_after_medically_fit``: ``referred_on`` less ``medically_fit_on``, in days."""

    event_type: Literal["DischargeReferred"] = "DischargeReferred"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    service: InHouseService
    step: ReferralStep
    referred_on: dt.date
    medically_fit_on: dt.date
    days_after_medically_fit: int = Field(ge=0)
    hours_per_week: Decimal
    requested_by: StaffId
    referred_at: dt.datetime


class DischargeFallbackUnavailable(Envelope):
    """A hospital discharge still unplaced at its deadline, and no in-house service had the carer
    hours to take it (decision record 0097): it stays on the market, most urgent first, and the
    brokerage team must act (``services_full``: the services looked at, in order)."""

    event_type: Literal["DischargeFallbackUnavailable"] = "DischargeFallbackUnavailable"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    services_full: list[InHouseService] = Field(min_length=1)
    medically_fit_on: dt.date
    hours_per_week: Decimal
    requested_by: StaffId
    recorded_at: dt.datetime


class DischargeReferralReleased(Envelope):
    """The in-house service covering a discharge stops (decision record 0097): a provider was found
    and starts on ``released_on`` (``provider_id``), or the package was cancelled (no provider). Its
    carer hours are free again from ``released_on`` (a UK date)."""

    event_type: Literal["DischargeReferralReleased"] = "DischargeReferralReleased"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    service: InHouseService
    released_on: dt.date
    provider_id: ProviderId | None = Field(default=None, description="The provider taking over, if any.")
    hours_per_week: Decimal
    requested_by: StaffId
    released_at: dt.datetime


# ---- brokerage -> finance (topic brokerage.service-agreements) ----------------------------

CostCentre = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,39}$")]


class PayerLine(Contract):
    """One payer's part of a week's cost: ``basis`` ``share`` is a funder's ``percent`` of the cost at
    the band rate; ``calls`` the daily ``calls`` a funder pays whole (decision record 0121; its
    ``percent`` of the cost at the band rate too, to two decimals); ``above_band`` the part above the
    band rate (a top-up, or the council's approved above-rate exception; no percent). Pounds per week."""

    payer: Payer
    basis: Literal["share", "calls", "above_band"]
    percent: Decimal | None = Field(default=None, gt=0, le=100, max_digits=5, decimal_places=2)
    calls: list[int] = Field(default_factory=list, max_length=5, description="For basis calls: 1 = a day's first.")
    pounds_per_week: Money

    @model_validator(mode="after")
    def _calls_go_with_their_basis(self) -> PayerLine:
        if (self.basis == "calls") != bool(self.calls) or any(not 1 <= c <= 6 for c in self.calls):
            raise ValueError("a calls line names its calls (1-6); no other line names any")
        return self


class AgreementFunding(Contract):
    """Who pays under the agreement from ``effective_from`` to ``effective_to`` (UK dates, both
    inclusive; no end: while the agreement lasts): the funding record's period in force (decision
    record 0089) cut to the agreement's dates. The lines' pounds add up to the weekly cost exactly."""

    effective_from: dt.date
    effective_to: dt.date | None = None
    funder: Funder
    lines: list[PayerLine] = Field(min_length=1)


class ServiceAgreementRecorded(Envelope):
    """The hand-off to finance (decision record 0109): what the council has agreed to pay one provider
    for one package - ``hourly_rate`` pounds per hour for ``hours_per_week`` carer hours per week
    (``weekly_cost`` pounds) from ``start_date`` to ``end_date`` (UK dates, inclusive; none: until
    further notice), split between payers by ``funding``, charged to ``cost_centre``.

    Records are never edited: a correction is a new record of the same ``agreement_id`` with the next
    ``version``, naming the record it replaces in ``supersedes``; the record in force is the one
    nothing supersedes. No person's details: the package id only. v2: a payer line may pay named
    daily ``calls`` (basis ``calls``, decision record 0121)."""

    event_type: Literal["ServiceAgreementRecorded"] = "ServiceAgreementRecorded"
    schema_version: Literal[2] = 2
    producer: Producer = "brokerage"
    record_id: uuid.UUID
    agreement_id: uuid.UUID
    version: int = Field(ge=1)
    supersedes: uuid.UUID | None = Field(default=None, description="The record this one replaces (version - 1).")
    reason: AgreementReason
    status: AgreementStatus
    package_id: uuid.UUID
    provider_id: ProviderId
    zone: ZoneId
    band: Band
    hourly_rate: Money = Field(description="The agreed rate, pounds per hour.")
    band_rate: Money = Field(
        description="The band's rate on the rate card the award was judged against, pounds per hour."
    )
    hours_per_week: Decimal = Field(gt=0, le=168, max_digits=5, decimal_places=2, description="Carer hours per week.")
    weekly_cost: Money = Field(description="hours_per_week x hourly_rate, pounds per week.")
    start_date: dt.date
    end_date: dt.date | None = None
    funding: list[AgreementFunding] = Field(default_factory=list)
    funding_revision: int = Field(ge=0, description="The funding record's revision used (0: the request's funding).")
    cost_centre: CostCentre
    rate_card: RateCardVersion
    recorded_at: dt.datetime

    @model_validator(mode="after")
    def _whole(self) -> ServiceAgreementRecorded:
        if (self.version == 1) != (self.supersedes is None):
            raise ValueError("version 1 supersedes nothing; every later version supersedes the one before")
        if self.status is AgreementStatus.agreed:
            if self.end_date is not None and self.end_date < self.start_date:
                raise ValueError("an agreed record ends on or after its start date")
            if not self.funding:
                raise ValueError("an agreed record says who pays")
        for part in self.funding:
            total = sum((line.pounds_per_week for line in part.lines), Decimal(0))
            if total != self.weekly_cost:
                raise ValueError(f"the payers' lines add up to {total}, not the weekly cost {self.weekly_cost}")
        return self


# ---- providers -> brokerage (topic providers.answers) ------------------------------------


class BidSubmitted(Envelope):
    event_type: Literal["BidSubmitted"] = "BidSubmitted"
    producer: Producer = "providers"
    package_id: uuid.UUID
    offer_round: int = Field(ge=1)
    provider_id: ProviderId
    hourly_rate: Money
    earliest_start: dt.date
    adapter: Literal["automatic", "webhook", "portal"]
    answered_at: dt.datetime


class ChangeAnswered(Envelope):
    """The provider holding a package answered an offered change: accepted, or declined with a code
    (its own words stay in the providers service)."""

    event_type: Literal["ChangeAnswered"] = "ChangeAnswered"
    producer: Producer = "providers"
    package_id: uuid.UUID
    change_id: uuid.UUID
    provider_id: ProviderId
    accepted: bool
    reason: DeclineReason | None = Field(default=None, description="Required when not accepted.")
    adapter: Literal["automatic", "webhook", "portal"]
    answered_at: dt.datetime

    @model_validator(mode="after")
    def _reason_when_declined(self) -> ChangeAnswered:
        if not self.accepted and self.reason is None:
            raise ValueError("a declined change needs a reason code")
        return self


class OfferDeclined(Envelope):
    """A provider declined an offer, with a code. v2: no ``reason_text`` - the provider's own words
    stay in the providers service (``GET /providers/{id}/offers``, for the brokerage team)."""

    event_type: Literal["OfferDeclined"] = "OfferDeclined"
    schema_version: Literal[2] = 2
    producer: Producer = "providers"
    package_id: uuid.UUID
    offer_round: int = Field(ge=1)
    provider_id: ProviderId
    reason: DeclineReason
    adapter: Literal["automatic", "webhook", "portal"]
    answered_at: dt.datetime


# ---- providers -> brokerage (topic providers.registry, keyed by provider) ----------------


class ProviderProfile(Contract):
    provider_id: ProviderId
    name: str
    tier: Literal["prime", "supplementary"]
    status: Literal["active", "suspended", "left"]
    zones: list[ZoneId]
    bands: list[Band]
    skills: list[CareNeed]
    double_handed: bool
    cqc_rating: Literal["outstanding", "good", "requires_improvement", "inadequate", "not_yet_rated"]
    local_risk: Literal["low", "medium", "high"]
    hand_backs_12m: int = Field(ge=0, description="Hand-backs in the 12 months to the day the profile was written.")
    hand_back_dates: list[dt.date] | None = Field(
        default=None,
        description="The register's dated hand-back record: the UK dates of the hand-backs in the 12 months to "
        "the day the profile was written, oldest first. A reader counts those in the 12 months to its own day "
        "(an offer's: decision record 0119), so a hand-back ages out without a new profile. None: written "
        "before the dates travelled (v2 upgraded).",
    )
    weekly_capacity_hours: Decimal = Field(ge=0)
    committed_hours: Decimal = Field(ge=0)
    offers_paused: bool = Field(
        default=False,
        description="No new offers while true: the council paused them pending an enquiry. Why stays in the "
        "providers service, visible to its safeguarding team only (decision record 0107).",
    )


class ProviderUpdated(Envelope):
    """The provider's whole current profile (event-carried state): the latest revision wins. v2: the
    profile's ``offers_paused``. v3: the profile's ``hand_back_dates`` (decision record 0119)."""

    event_type: Literal["ProviderUpdated"] = "ProviderUpdated"
    schema_version: Literal[3] = 3
    producer: Producer = "providers"
    revision: int = Field(ge=1)
    profile: ProviderProfile

    @property
    def key(self) -> str:
        return self.profile.provider_id


CqcRating = Literal["outstanding", "good", "requires_improvement", "inadequate", "not_yet_rated"]
LocalRisk = Literal["low", "medium", "high"]
# CQC's location ids look like 1-101669561 (its care directory's "Location ID").
CqcLocationId = Annotated[str, Field(pattern=r"^1-[0-9]{1,12}$")]


class QualityRegister(Contract):
    """A provider's quality and risk register after a change: the quality score's inputs and the
    counts commissioners follow (docs/guide/quality-register.md)."""

    cqc_location_id: CqcLocationId | None
    cqc_rating: CqcRating
    cqc_inspected_on: dt.date | None = Field(description="The CQC's publication date of the rating.")
    local_risk: LocalRisk
    local_risk_reviewed_on: dt.date | None = Field(description="UK date of the latest review of the RAG.")
    hand_backs_12m: int = Field(ge=0)
    late_starts_12m: int = Field(ge=0)
    open_complaints: int = Field(ge=0)
    open_improvement_plans: int = Field(ge=0)
    quality_score: Decimal = Field(ge=0, le=100, description="0-100, by the weights in force (award-ranking.md).")


class ProviderQualityRecorded(Envelope):
    """A change to a provider's quality and risk register (decision 0103), with the register as it
    stands after it. Codes only: a reviewer's or complainant's words stay in the providers service."""

    event_type: Literal["ProviderQualityRecorded"] = "ProviderQualityRecorded"
    producer: Producer = "providers"
    provider_id: ProviderId
    change: QualityChange
    recorded_by: StaffId = Field(description="The verified identity of who recorded it, or the system.")
    recorded_at: dt.datetime
    cqc_rating: CqcRating | None = Field(default=None, description="cqc_rating: the new rating.")
    cqc_inspected_on: dt.date | None = None
    risk_reason: RiskReason | None = Field(default=None, description="local_risk: why.")
    complaint_id: uuid.UUID | None = None
    complaint_theme: ComplaintTheme | None = None
    plan_id: uuid.UUID | None = None
    plan_due_on: dt.date | None = None
    package_id: uuid.UUID | None = Field(default=None, description="hand_back, late_start: the package.")
    quality_register: QualityRegister

    @property
    def key(self) -> str:
        # Not the provider id: the registry topic is compacted by key, and each provider's latest
        # ProviderUpdated must survive compaction beside its latest register change.
        return f"{self.provider_id}:quality"


# ---- notifications -> everyone (topic notifications.confirmations) ------------------------


class Recipient(Contract):
    kind: Literal["provider", "broker", "person", "losing_bidder"]
    recipient_id: RecipientId
    channel: DeliveryChannel


class PlacementConfirmed(Envelope):
    """A placement's messages recorded for each recipient and channel. v2: recipient ids and
    channels constrained."""

    event_type: Literal["PlacementConfirmed"] = "PlacementConfirmed"
    schema_version: Literal[2] = 2
    producer: Producer = "notifications"
    package_id: uuid.UUID
    provider_id: ProviderId
    recipients: list[Recipient]
    confirmed_at: dt.datetime


class NotificationFailed(Envelope):
    """A message that could not be delivered, for good: no usable channel, no contact registered,
    an address refused, or transient failures past the retry limit. Carries no address and no error
    text (that stays with the delivery: GET /packages/{id}/notifications). v2: ``reason`` is a code;
    ``message``, ``recipient_id`` and ``channel`` constrained."""

    event_type: Literal["NotificationFailed"] = "NotificationFailed"
    schema_version: Literal[2] = 2
    producer: Producer = "notifications"
    package_id: uuid.UUID
    delivery_id: uuid.UUID = Field(
        description="The delivery's id in the notifications service (GET /packages/{id}/notifications)."
    )
    message: MessageName = Field(description="What was to be said, e.g. placement_person, package_unplaced.")
    recipient_kind: Literal["provider", "broker", "person", "losing_bidder", "brokerage_team"]
    recipient_id: RecipientId = Field(
        description="Provider id, staff id, brokerage-team, or the package id for the person's contact."
    )
    channel: DeliveryChannel = Field(
        description="email, notify_email, notify_sms, webhook, log; none when no channel could be used."
    )
    reason: NotificationFailure
    attempts: int = Field(ge=0)
    failed_at: dt.datetime


Event = (
    PackageRequested
    | OfferMade
    | PackagePlaced
    | PackageUnplaced
    | PackageCancelled
    | PackageStarted
    | PackageHandedBack
    | PackageReopened
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
    | DischargeRequested
    | DischargeReferred
    | DischargeFallbackUnavailable
    | DischargeReferralReleased
    | ServiceAgreementRecorded
    | ChangeAnswered
    | ExceptionRequested
    | ExceptionDecided
    | ExceptionFirstApproved
    | BidSubmitted
    | OfferDeclined
    | ProviderUpdated
    | ProviderQualityRecorded
    | PlacementConfirmed
    | NotificationFailed
)
AnyEvent = Annotated[Event, Field(discriminator="event_type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)
EVENT_TYPES: dict[str, type[Envelope]] = {model.model_fields["event_type"].default: model for model in get_args(Event)}


def parse_event(raw: bytes | str) -> Event:
    """Parse a Kafka message value into its current event class, upgrading an older schema version
    (``schemas/legacy.py``); raises pydantic.ValidationError (or ValueError for bytes that are not
    JSON) for anything else, naming the field."""
    try:
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError:
        legacy = _legacy_model(raw)
        if legacy is None:
            raise
    return legacy.model_validate_json(raw).upgrade()  # type: ignore[attr-defined, no-any-return]


def parse_event_as_sent(raw: bytes | str) -> Envelope:
    """The event in the version it was written in (no upgrade): for tools that show history."""
    legacy = _legacy_model(raw)
    return legacy.model_validate_json(raw) if legacy is not None else EVENT_ADAPTER.validate_json(raw)


def _legacy_model(raw: bytes | str) -> type[Envelope] | None:
    """The legacy model of a message whose type and version name one, else None (cheap: only read
    after the current models refused the message)."""
    from schemas.legacy import LEGACY

    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    key = (data.get("event_type"), data.get("schema_version"))
    return LEGACY.get(key) if all(isinstance(k, str | int) for k in key) else None  # type: ignore[arg-type]


def dump_event(event: Envelope) -> bytes:
    return event.model_dump_json().encode()
