"""Earlier versions of the event contracts, kept so that every message ever written still parses.

A consumer may read an event written before its contract changed (a topic's retention, a dead
letter replayed): :func:`schemas.events.parse_event` parses it with its own version's model here
and ``upgrade()`` s it to the current model, so handlers only ever see one shape.

Version 1 of these events carried words people typed (a cancel or hand-back reason, an exception
decision's why, a decline's text, an error message) and free strings for ids. Their upgrades keep
no such text: a typed reason becomes the code ``other`` (the brokerage keeps the words), a
decline's text is dropped (the providers service keeps it), and an error becomes the code it
describes. The models below are frozen: their JSON Schemas (``schemas/json/*.v1.schema.json``)
must not change; never edit one - add a version.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
from decimal import Decimal
from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from schemas import events as ev
from schemas.events import Contract, Envelope, Money, Producer, ProviderId, ZoneId
from schemas.vocabulary import (
    AgreementReason,
    AgreementStatus,
    Band,
    CancelReason,
    CareNeed,
    DeclineReason,
    ExceptionDecisionReason,
    Funder,
    HandBackReason,
    NotificationFailure,
    Payer,
    ReopenReason,
    Tier,
    UnplacedReason,
    Urgency,
)

_CHANNELS = set(get_args(ev.DeliveryChannel))
_UNPLACED = {
    "no eligible provider": UnplacedReason.no_eligible_provider,
    "no acceptable bid on any tier": UnplacedReason.no_acceptable_bid,
    "above-rate exception rejected": UnplacedReason.exception_rejected,
    "no bidder above the rate is still eligible": UnplacedReason.no_eligible_bidder_above_rate,
}
# What the notifications service wrote as a v1 reason, by how it began.
_FAILURES = (
    ("no usable channel", NotificationFailure.no_usable_channel),
    ("no contact registered", NotificationFailure.no_contact_registered),
    ("gave up after", NotificationFailure.retries_exhausted),
)


def _as_id(text: str) -> str:
    """A v1 free-text id as an id of the current pattern (staff ids were free text up to 100)."""
    cleaned = re.sub(r"[^A-Za-z0-9._@-]+", "-", text).lstrip("._@-")[:100]
    return cleaned or "unknown"


def _current(event: Envelope) -> dict[str, Any]:
    """The v1 event's fields as the current version's, before the changed ones are replaced."""
    current = ev.EVENT_TYPES[type(event).model_fields["event_type"].default]
    return event.model_dump() | {"schema_version": current.model_fields["schema_version"].default}


class PackagePlacedV1(Envelope):
    model_config = ConfigDict(title="PackagePlaced")
    event_type: Literal["PackagePlaced"] = "PackagePlaced"
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
    rate_card: str = Field(description="Version of the rate card the award was judged against.")
    requested_by: str = Field(description="Staff id of the broker who requested the package.")
    losing_provider_ids: list[ProviderId] = Field(default_factory=list)
    placed_at: dt.datetime

    def upgrade(self) -> ev.PackagePlaced:
        return ev.PackagePlaced.model_validate(
            _current(self) | {"rate_card": _as_id(self.rate_card), "requested_by": _as_id(self.requested_by)}
        )


class PackagePlacedV2(Envelope):
    """Awarded: the provider now holds the package (until a cancellation, hand-back or re-brokering).
    v2: ``rate_card`` and ``requested_by`` are ids (patterns), ``losing_provider_ids`` only those
    offered in this cycle of offers."""

    # v2, before ``bid_ranks``: upgraded with none (the ranks were not sent).

    model_config = ConfigDict(title="PackagePlaced")
    event_type: Literal["PackagePlaced"] = "PackagePlaced"
    schema_version: Literal[2] = 2
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
    rate_card: ev.RateCardVersion = Field(description="Version of the rate card the award was judged against.")
    requested_by: ev.StaffId = Field(description="Staff id of the broker who requested the package.")
    losing_provider_ids: list[ProviderId] = Field(
        default_factory=list, description="Offered the package in this cycle of offers, and not awarded it."
    )
    placed_at: dt.datetime

    def upgrade(self) -> ev.PackagePlaced:
        return ev.PackagePlaced.model_validate(_current(self))


class PackageUnplacedV1(Envelope):
    """No acceptable bid on any tier: the package joins the unplaced queue (the waiting list)."""

    model_config = ConfigDict(title="PackageUnplaced")

    event_type: Literal["PackageUnplaced"] = "PackageUnplaced"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    zone: ZoneId
    band: Band
    urgency: Urgency
    hours_per_week: Decimal
    reason: str
    requested_by: str
    unplaced_at: dt.datetime

    def upgrade(self) -> ev.PackageUnplaced:
        reason = _UNPLACED.get(self.reason, UnplacedReason.no_acceptable_bid)
        return ev.PackageUnplaced.model_validate(
            _current(self) | {"reason": reason, "requested_by": _as_id(self.requested_by)}
        )


class ExceptionRequestedV1(Envelope):
    """Only bids above the band rate came in: a broker must approve paying more, or refuse."""

    model_config = ConfigDict(title="ExceptionRequested")

    event_type: Literal["ExceptionRequested"] = "ExceptionRequested"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId = Field(description="The best-ranked bid above the rate.")
    hourly_rate: Money
    band_rate: Money
    zone: ZoneId
    band: Band
    urgency: Urgency
    requested_by: str
    requested_at: dt.datetime

    def upgrade(self) -> ev.ExceptionRequested:
        return ev.ExceptionRequested.model_validate(_current(self) | {"requested_by": _as_id(self.requested_by)})


class ExceptionDecidedV1(Envelope):
    """A broker's decision on paying above the band rate: who, when, why."""

    model_config = ConfigDict(title="ExceptionDecided")

    event_type: Literal["ExceptionDecided"] = "ExceptionDecided"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    decision: Literal["approved", "rejected"]
    decided_by: str
    reason: str = Field(min_length=1, max_length=500)
    decided_at: dt.datetime

    def upgrade(self) -> ev.ExceptionDecided:
        return ev.ExceptionDecided.model_validate(
            _current(self) | {"reason": ExceptionDecisionReason.other, "decided_by": _as_id(self.decided_by)}
        )


class PackageCancelledV1(Envelope):
    """A broker cancelled the package before it started; a provider it was placed with is released."""

    model_config = ConfigDict(title="PackageCancelled")

    event_type: Literal["PackageCancelled"] = "PackageCancelled"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=500)
    cancelled_by: str
    provider_id: ProviderId | None = Field(default=None, description="The provider it had been placed with, if any.")
    hours_per_week: Decimal
    cancelled_at: dt.datetime

    def upgrade(self) -> ev.PackageCancelled:
        return ev.PackageCancelled.model_validate(
            _current(self) | {"reason": CancelReason.other, "cancelled_by": _as_id(self.cancelled_by)}
        )


class PackageHandedBackV1(Envelope):
    """The provider gives the package back, with notice; the package is reopened with priority."""

    model_config = ConfigDict(title="PackageHandedBack")

    event_type: Literal["PackageHandedBack"] = "PackageHandedBack"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    notice_ends_on: dt.date
    reason: str = Field(min_length=1, max_length=500)
    hours_per_week: Decimal
    recorded_by: str
    recorded_at: dt.datetime

    def upgrade(self) -> ev.PackageHandedBack:
        return ev.PackageHandedBack.model_validate(
            _current(self) | {"reason": HandBackReason.other, "recorded_by": _as_id(self.recorded_by)}
        )


class PackageReopenedV1(Envelope):
    """The provider a package was placed with was suspended or left the framework: the package is
    taken from it and brokered again with priority and continuity (not a hand-back: it does not
    count against the provider's quality rating)."""

    model_config = ConfigDict(title="PackageReopened")

    event_type: Literal["PackageReopened"] = "PackageReopened"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    reason: str = Field(min_length=1, max_length=500)
    hours_per_week: Decimal
    reopened_at: dt.datetime

    def upgrade(self) -> ev.PackageReopened:
        reason = ReopenReason.provider_left if "left" in self.reason else ReopenReason.provider_suspended
        return ev.PackageReopened.model_validate(_current(self) | {"reason": reason})


class PackageStartedV1(Envelope):
    """Care began: the end of the wait the brokerage evidences."""

    model_config = ConfigDict(title="PackageStarted")

    event_type: Literal["PackageStarted"] = "PackageStarted"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    started_on: dt.date
    recorded_by: str
    recorded_at: dt.datetime

    def upgrade(self) -> ev.PackageStarted:
        return ev.PackageStarted.model_validate(_current(self) | {"recorded_by": _as_id(self.recorded_by)})


class ProviderProfile(Contract):  # as version 1 of ProviderUpdated carried it (no offers_paused): named as then
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
    hand_backs_12m: int = Field(ge=0)
    weekly_capacity_hours: Decimal = Field(ge=0)
    committed_hours: Decimal = Field(ge=0)


class ProviderUpdatedV1(Envelope):
    """The provider's whole current profile (event-carried state): the latest revision wins."""

    model_config = ConfigDict(title="ProviderUpdated")

    event_type: Literal["ProviderUpdated"] = "ProviderUpdated"
    producer: Producer = "providers"
    revision: int = Field(ge=1)
    profile: ProviderProfile

    def upgrade(self) -> ev.ProviderUpdated:
        # Written before offers could be paused (decision record 0107): none were.
        return ev.ProviderUpdated.model_validate(_current(self) | {"profile": self.profile.model_dump()})


class _V2:  # version 2's profile, named as then (its JSON Schema's $defs name it ProviderProfile)
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
        hand_backs_12m: int = Field(ge=0)
        weekly_capacity_hours: Decimal = Field(ge=0)
        committed_hours: Decimal = Field(ge=0)
        offers_paused: bool = Field(
            default=False,
            description="No new offers while true: the council paused them pending an enquiry. Why stays in the "
            "providers service, visible to its safeguarding team only (decision record 0107).",
        )


class ProviderUpdatedV2(Envelope):
    """The provider's whole current profile (event-carried state): the latest revision wins. v2: the
    profile's ``offers_paused``."""

    model_config = ConfigDict(title="ProviderUpdated")

    event_type: Literal["ProviderUpdated"] = "ProviderUpdated"
    schema_version: Literal[2] = 2
    producer: Producer = "providers"
    revision: int = Field(ge=1)
    profile: _V2.ProviderProfile

    def upgrade(self) -> ev.ProviderUpdated:
        # Written before the dated hand-back record travelled (decision record 0119): only the count.
        return ev.ProviderUpdated.model_validate(_current(self) | {"profile": self.profile.model_dump()})


class OfferDeclinedV1(Envelope):
    model_config = ConfigDict(title="OfferDeclined")
    event_type: Literal["OfferDeclined"] = "OfferDeclined"
    producer: Producer = "providers"
    package_id: uuid.UUID
    offer_round: int = Field(ge=1)
    provider_id: ProviderId
    reason: DeclineReason
    reason_text: str = Field(default="", max_length=500)
    adapter: Literal["automatic", "webhook", "portal"]
    answered_at: dt.datetime

    def upgrade(self) -> ev.OfferDeclined:
        return ev.OfferDeclined.model_validate({k: v for k, v in _current(self).items() if k != "reason_text"})


class Recipient(Contract):  # named as in v1: its JSON Schema's $defs name it so
    kind: Literal["provider", "broker", "person", "losing_bidder"]
    recipient_id: str
    channel: str


class PlacementConfirmedV1(Envelope):
    model_config = ConfigDict(title="PlacementConfirmed")
    event_type: Literal["PlacementConfirmed"] = "PlacementConfirmed"
    producer: Producer = "notifications"
    package_id: uuid.UUID
    provider_id: ProviderId
    recipients: list[Recipient]
    confirmed_at: dt.datetime

    def upgrade(self) -> ev.PlacementConfirmed:
        recipients = [
            {
                "kind": r.kind,
                "recipient_id": _as_id(r.recipient_id),
                "channel": r.channel if r.channel in _CHANNELS else "none",
            }
            for r in self.recipients
        ]
        return ev.PlacementConfirmed.model_validate(_current(self) | {"recipients": recipients})


class NotificationFailedV1(Envelope):
    """A message that could not be delivered, for good: no usable channel, no contact registered,
    an address refused, or transient failures past the retry limit. Carries no address."""

    model_config = ConfigDict(title="NotificationFailed")

    event_type: Literal["NotificationFailed"] = "NotificationFailed"
    producer: Producer = "notifications"
    package_id: uuid.UUID
    delivery_id: uuid.UUID = Field(
        description="The delivery's id in the notifications service (GET /packages/{id}/notifications)."
    )
    message: str = Field(description="What was to be said, e.g. placement_person, package_unplaced.")
    recipient_kind: Literal["provider", "broker", "person", "losing_bidder", "brokerage_team"]
    recipient_id: str = Field(
        description="Provider id, staff id, brokerage-team, or the package id for the person's contact."
    )
    channel: str = Field(
        description="email, notify_email, notify_sms, webhook, log; none when no channel could be used."
    )
    reason: str = Field(max_length=1000)
    attempts: int = Field(ge=0)
    failed_at: dt.datetime

    def upgrade(self) -> ev.NotificationFailed:
        reason = next(
            (code for start, code in _FAILURES if self.reason.startswith(start)), NotificationFailure.address_refused
        )
        return ev.NotificationFailed.model_validate(
            _current(self)
            | {
                "reason": reason,
                "recipient_id": _as_id(self.recipient_id),
                "channel": self.channel if self.channel in _CHANNELS else "none",
            }
        )


# ---- FundingRecorded v1 and ServiceAgreementRecorded v1 (before named calls, decision record 0121) ----
# The nested models keep their v1 names: the frozen JSON Schemas' $defs name them so.


class FundingPeriod(Contract):
    """Who pays from ``effective_from`` (a UK date) until the next period's: ``funder``, and each
    funder's share (one share of 100% unless joint). The shares always add up to 100%."""

    effective_from: dt.date
    funder: Funder
    shares: list[ev.FundingShare] = Field(min_length=1)

    @model_validator(mode="after")
    def _shares_make_the_whole(self) -> FundingPeriod:
        total = sum((s.percent for s in self.shares), Decimal(0))
        if total != 100:
            raise ValueError(f"the shares add up to {total}%, not 100%")
        if any(s.funder is Funder.joint for s in self.shares):
            raise ValueError("a share names a funder, never joint")
        if self.funder is not Funder.joint and [s.funder for s in self.shares] != [self.funder]:
            raise ValueError("a period with one funder has that funder's share of 100%")
        return self


class FundingRecordedV1(Envelope):
    """A package's funding, whole (decision record 0089): the ``periods`` in date order (each runs until
    the next one's ``effective_from``; the last while the package lasts) and any ``top_up``. Revision
    ``revision`` replaces every earlier one. ``provider_id``: the provider holding the package, if any
    (it invoices each funder for its share)."""

    model_config = ConfigDict(title="FundingRecorded")
    event_type: Literal["FundingRecorded"] = "FundingRecorded"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    revision: int = Field(ge=1)
    periods: list[FundingPeriod] = Field(min_length=1)
    top_up: ev.TopUp | None = None
    provider_id: ProviderId | None = None
    recorded_by: ev.StaffId
    requested_by: ev.StaffId | None = Field(default=None, description="The broker who requested the package.")
    recorded_at: dt.datetime

    @model_validator(mode="after")
    def _periods_in_order(self) -> FundingRecordedV1:
        days = [p.effective_from for p in self.periods]
        if any(later <= earlier for earlier, later in itertools.pairwise(days)):
            raise ValueError("the periods' effective_from dates must rise")
        return self

    # ---- hospital discharge (decision record 0097) -------------------------------------------

    def upgrade(self) -> ev.FundingRecorded:
        # v1 named no calls: every period's week is split by its shares alone.
        return ev.FundingRecorded.model_validate(_current(self))


class PayerLine(Contract):
    """One payer's part of a week's cost: ``basis`` ``share`` is a funder's ``percent`` of the cost at
    the band rate; ``above_band`` the part above the band rate (a top-up, or the council's approved
    above-rate exception; no percent). Pounds per week."""

    payer: Payer
    basis: Literal["share", "above_band"]
    percent: Decimal | None = Field(default=None, gt=0, le=100, max_digits=5, decimal_places=2)
    pounds_per_week: Money


class AgreementFunding(Contract):
    """Who pays under the agreement from ``effective_from`` to ``effective_to`` (UK dates, both
    inclusive; no end: while the agreement lasts): the funding record's period in force (decision
    record 0089) cut to the agreement's dates. The lines' pounds add up to the weekly cost exactly."""

    effective_from: dt.date
    effective_to: dt.date | None = None
    funder: Funder
    lines: list[PayerLine] = Field(min_length=1)


class ServiceAgreementRecordedV1(Envelope):
    """The hand-off to finance (decision record 0109): what the council has agreed to pay one provider
    for one package - ``hourly_rate`` pounds per hour for ``hours_per_week`` carer hours per week
    (``weekly_cost`` pounds) from ``start_date`` to ``end_date`` (UK dates, inclusive; none: until
    further notice), split between payers by ``funding``, charged to ``cost_centre``.

    Records are never edited: a correction is a new record of the same ``agreement_id`` with the next
    ``version``, naming the record it replaces in ``supersedes``; the record in force is the one
    nothing supersedes. No person's details: the package id only."""

    model_config = ConfigDict(title="ServiceAgreementRecorded")
    event_type: Literal["ServiceAgreementRecorded"] = "ServiceAgreementRecorded"
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
    cost_centre: ev.CostCentre
    rate_card: ev.RateCardVersion
    recorded_at: dt.datetime

    @model_validator(mode="after")
    def _whole(self) -> ServiceAgreementRecordedV1:
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

    def upgrade(self) -> ev.ServiceAgreementRecorded:
        # v1's lines were shares and above-band parts: none names calls.
        return ev.ServiceAgreementRecorded.model_validate(_current(self))


# (event type, schema version) -> its model, for every version no longer current.
LEGACY: dict[tuple[str, int], type[Envelope]] = {
    (model.model_fields["event_type"].default, model.model_fields["schema_version"].default): model
    for model in (
        PackagePlacedV1,
        PackagePlacedV2,
        PackageUnplacedV1,
        ExceptionRequestedV1,
        ExceptionDecidedV1,
        PackageCancelledV1,
        PackageHandedBackV1,
        PackageReopenedV1,
        PackageStartedV1,
        OfferDeclinedV1,
        ProviderUpdatedV1,
        ProviderUpdatedV2,
        PlacementConfirmedV1,
        NotificationFailedV1,
        FundingRecordedV1,
        ServiceAgreementRecordedV1,
    )
}
