"""Event contracts: every message the three services put on Kafka.

Each event is one pydantic model: the envelope fields (event id, type, schema version,
occurred-at, correlation id, causation id, producer) followed by its own fields. The
``event_type`` is a ``Literal`` so that :data:`AnyEvent` parses any message into the right
class, and an unknown type or schema version fails validation (and goes to dead letters).

Privacy is part of the contract: no event carries a person's name, address, contact
details, NHS number, date of birth or care notes. Those stay in the brokerage schema.

Changing an event: add a new ``schema_version`` model beside the old one, keep the old
samples in ``schemas/samples/`` parsing, and re-export the JSON Schemas
(``python -m schemas.export``); ``tests/unit/test_contracts.py`` fails until you do.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.vocabulary import Band, CareNeed, DeclineReason, Funding, Tier, Urgency

Producer = Literal["brokerage", "providers", "notifications"]
Money = Annotated[Decimal, Field(max_digits=8, decimal_places=2, ge=0)]
ProviderId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]
ZoneId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Contract(BaseModel):
    # Contracts are strict about what they accept: a field nobody declared is a mistake
    # on the producing side, not something to pass along silently.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(Contract):
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
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
    calls_per_day: int = Field(ge=1, le=6)
    minutes_per_call: int = Field(ge=15, le=180)
    carers_per_call: int = Field(ge=1, le=2, description="2 = double-handed calls.")
    days_per_week: int = Field(default=7, ge=1, le=7)

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


class PackagePlaced(Envelope):
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


class PackageUnplaced(Envelope):
    """No acceptable bid on any tier: the package joins the unplaced queue (the waiting list)."""

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


class ExceptionRequested(Envelope):
    """Only bids above the band rate came in: a broker must approve paying more, or refuse."""

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


class ExceptionDecided(Envelope):
    """A broker's decision on paying above the band rate: who, when, why."""

    event_type: Literal["ExceptionDecided"] = "ExceptionDecided"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    decision: Literal["approved", "rejected"]
    decided_by: str
    reason: str = Field(min_length=1, max_length=500)
    decided_at: dt.datetime


class PackageCancelled(Envelope):
    """A broker cancelled the package before it started; a provider it was placed with is released."""

    event_type: Literal["PackageCancelled"] = "PackageCancelled"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=500)
    cancelled_by: str
    provider_id: ProviderId | None = Field(default=None, description="The provider it had been placed with, if any.")
    hours_per_week: Decimal
    cancelled_at: dt.datetime


class PackageHandedBack(Envelope):
    """The provider gives the package back, with notice; the package is reopened with priority."""

    event_type: Literal["PackageHandedBack"] = "PackageHandedBack"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    notice_ends_on: dt.date
    reason: str = Field(min_length=1, max_length=500)
    hours_per_week: Decimal
    recorded_by: str
    recorded_at: dt.datetime


class PackageReopened(Envelope):
    """The provider a package was placed with was suspended or left the framework: the package is
    taken from it and brokered again with priority and continuity (not a hand-back: it does not
    count against the provider's quality rating)."""

    event_type: Literal["PackageReopened"] = "PackageReopened"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    reason: str = Field(min_length=1, max_length=500)
    hours_per_week: Decimal
    reopened_at: dt.datetime


class PackageStarted(Envelope):
    """Care began: the end of the wait the brokerage evidences."""

    event_type: Literal["PackageStarted"] = "PackageStarted"
    producer: Producer = "brokerage"
    package_id: uuid.UUID
    provider_id: ProviderId
    started_on: dt.date
    recorded_by: str
    recorded_at: dt.datetime


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


class OfferDeclined(Envelope):
    event_type: Literal["OfferDeclined"] = "OfferDeclined"
    producer: Producer = "providers"
    package_id: uuid.UUID
    offer_round: int = Field(ge=1)
    provider_id: ProviderId
    reason: DeclineReason
    reason_text: str = Field(default="", max_length=500)
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
    hand_backs_12m: int = Field(ge=0)
    weekly_capacity_hours: Decimal = Field(ge=0)
    committed_hours: Decimal = Field(ge=0)


class ProviderUpdated(Envelope):
    """The provider's whole current profile (event-carried state): the latest revision wins."""

    event_type: Literal["ProviderUpdated"] = "ProviderUpdated"
    producer: Producer = "providers"
    revision: int = Field(ge=1)
    profile: ProviderProfile

    @property
    def key(self) -> str:
        return self.profile.provider_id


# ---- notifications -> everyone (topic notifications.confirmations) ------------------------


class Recipient(Contract):
    kind: Literal["provider", "broker", "person", "losing_bidder"]
    recipient_id: str
    channel: str


class PlacementConfirmed(Envelope):
    event_type: Literal["PlacementConfirmed"] = "PlacementConfirmed"
    producer: Producer = "notifications"
    package_id: uuid.UUID
    provider_id: ProviderId
    recipients: list[Recipient]
    confirmed_at: dt.datetime


class NotificationFailed(Envelope):
    """A message that could not be delivered, for good: no usable channel, no contact registered,
    an address refused, or transient failures past the retry limit. Carries no address."""

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


Event = (
    PackageRequested
    | OfferMade
    | PackagePlaced
    | PackageUnplaced
    | PackageCancelled
    | PackageStarted
    | PackageHandedBack
    | PackageReopened
    | ExceptionRequested
    | ExceptionDecided
    | BidSubmitted
    | OfferDeclined
    | ProviderUpdated
    | PlacementConfirmed
    | NotificationFailed
)
AnyEvent = Annotated[Event, Field(discriminator="event_type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(AnyEvent)
EVENT_TYPES: dict[str, type[Envelope]] = {model.model_fields["event_type"].default: model for model in get_args(Event)}


def parse_event(raw: bytes | str) -> Event:
    """Parse a Kafka message value into its event class; raises pydantic.ValidationError."""
    return EVENT_ADAPTER.validate_json(raw)


def dump_event(event: Envelope) -> bytes:
    return event.model_dump_json().encode()
