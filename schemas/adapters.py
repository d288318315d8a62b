"""The adapter contract: what a provider's own system receives and sends over HTTP.

- :class:`OfferNotice`: an offer, as POSTed to a webhook adapter (signed, see
  ``services/runtime/signing.py``) and as listed under ``GET /me/offers`` for a portal.
  Like the events, it carries no direct identifier of the person: zone, band, postcode
  district, hours, visit pattern, needs, urgency, start date - enough to decide, nothing more.
- :class:`BidRequest`, :class:`DeclineRequest`: the provider's answer,
  ``POST /me/offers/{package_id}/bid`` or ``.../decline``.
- :class:`OfferClosedNotice`: an offer that closed for the provider, and how (won; lost, with its
  bid's rank; closed, with the reason), POSTed to a webhook adapter and listed under ``GET /me/notices``.
- :class:`TestOfferNotice`: a signed sample delivery marked as a test, sent when the provider
  asks (``POST /me/webhook/test``), to check its receiver.
- :class:`ChangeNotice`: a change to a package the provider holds (decision record 0082), POSTed to a
  webhook adapter and listed under ``GET /me/package-changes``; answered with
  ``POST /me/package-changes/{change_id}/accept`` or ``.../decline`` (a :class:`DeclineRequest`).

Exported as JSON Schema beside the events (``python -m schemas.export``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import Money, PackageSpec, ProviderId
from schemas.fields import Day, FreeText
from schemas.vocabulary import DeclineReason, Tier

OfferStatus = Literal["offered", "bid", "declined", "won", "lost", "closed"]


class OfferNotice(BaseModel):
    """One offer to one provider."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["offer"] = "offer"
    package_id: uuid.UUID
    offer_round: int = Field(ge=1)
    provider_id: ProviderId = Field(description="The provider this notice is for (the receiver)")
    tier: Tier
    package: PackageSpec
    band_rate: Money = Field(description="The framework's hourly rate for the band; a bid above it needs an approval")
    window_closes_at: dt.datetime = Field(description="Answer before this; later answers are recorded as late")
    status: OfferStatus = "offered"
    answer_with: dict[str, str] = Field(
        description="Where to answer: the bid and decline endpoints of the provider API"
    )


class ChangeNotice(BaseModel):
    """A change to a package the provider holds: the package as it would be, from ``effective_date``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["change"] = "change"
    change_id: uuid.UUID
    package_id: uuid.UUID
    provider_id: ProviderId = Field(description="The provider this notice is for (the receiver)")
    package: PackageSpec = Field(description="The package after the change")
    previous_hours_per_week: Decimal = Field(description="Carer hours a week before the change")
    effective_date: dt.date = Field(description="The first day of the new pattern (UK date)")
    window_closes_at: dt.datetime = Field(description="Answer before this; unanswered, the package is re-brokered")
    status: Literal["offered", "accepted", "declined", "applied", "closed"] = "offered"
    answer_with: dict[str, str] = Field(description="Where to answer: the accept and decline endpoints")


OfferOutcome = Literal["won", "lost", "closed"]
OfferClosedReason = Literal[
    "placed_with_you",
    "placed_elsewhere",
    "window_ended",
    "round_closed_early",
    "package_cancelled",
    "package_unplaced",
]


class OfferClosedNotice(BaseModel):
    """An offer that closed for this provider, and how: POSTed to a webhook adapter (signed, like an
    offer; its own delivery id) and listed under ``GET /me/notices``. After it, that offer is never
    delivered again and cannot be answered.

    - ``won``: the package was placed with you (``placed_with_you``);
    - ``lost``: you bid and the package was placed with another provider (``placed_elsewhere``),
      with your bid's ``rank`` in the round that decided it (1 = ranked first) - never another
      provider's price;
    - ``closed``: the offer ended without an award to you: unanswered when its round ended
      (``window_ended``, or ``round_closed_early`` when the outcome was settled before the window
      ran out), unanswered when the package was placed (``placed_elsewhere``), or the package was
      cancelled (``package_cancelled``) or joined the unplaced queue (``package_unplaced``), your bid
      released."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["offer_closed"] = "offer_closed"
    notice_id: uuid.UUID = Field(description="This notice's id (the same however often it is listed or delivered)")
    package_id: uuid.UUID
    offer_round: int = Field(ge=1)
    provider_id: ProviderId = Field(description="The provider this notice is for (the receiver)")
    outcome: OfferOutcome
    reason: OfferClosedReason
    rank: int | None = Field(
        default=None,
        ge=1,
        description="lost: your bid's rank in the round that decided the award (1 = first); null otherwise, "
        "or when your bid was not ranked in that round (an earlier round's bid)",
    )
    ranked_bids: int | None = Field(default=None, ge=1, description="lost: how many bids that round ranked")
    closed_at: dt.datetime = Field(description="When the offer closed (UTC)")


class BidRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # le: what the rate columns (numeric(8,2)) hold; the award rules judge the rate itself.
    rate: Money = Field(gt=0, le=Decimal("999999.99"), description="Hourly rate asked, in pounds")
    earliest_start: Day = Field(description="First day the provider can start the care")


class DeclineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: DeclineReason
    text: FreeText = Field(default="", max_length=500, description="Required when the reason is 'other'")

    @model_validator(mode="after")
    def _text_for_other(self) -> DeclineRequest:
        if self.reason is DeclineReason.other and not self.text:
            raise ValueError("text is required when the reason is 'other'")
        return self


class TestOfferNotice(BaseModel):
    """A test delivery, sent when the provider asks for one (``POST /me/webhook/test``, decision
    0100): signed and delivered exactly like an offer, with a made-up package shaped like a real
    one, so a receiver can be checked end to end. Marked twice as a test - ``kind`` is
    ``test_offer`` and ``test`` is true - and never a real package: its ``package_id`` is offered
    to no one, so an answer to it is a 404. A receiver should verify it, answer 2xx and do nothing."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["test_offer"] = "test_offer"
    test: Literal[True] = Field(default=True, description="Always true: this is not a real offer")
    package_id: uuid.UUID = Field(description="Made up for the test; offered to no one")
    offer_round: int = Field(ge=1)
    provider_id: ProviderId = Field(description="The provider this notice is for (the receiver)")
    tier: Tier
    package: PackageSpec = Field(description="A sample package in one of your zones and bands (no real person)")
    band_rate: Money = Field(description="The framework's current hourly rate for the sample's band, in pounds")
    window_closes_at: dt.datetime
    status: OfferStatus = "offered"
    answer_with: dict[str, str] = Field(description="Shaped like a real offer's; answering a test offer is a 404")


ADAPTER_MODELS: dict[str, type[BaseModel]] = {
    "TestOfferNotice": TestOfferNotice,
    "OfferNotice": OfferNotice,
    "BidRequest": BidRequest,
    "DeclineRequest": DeclineRequest,
    "ChangeNotice": ChangeNotice,
    "OfferClosedNotice": OfferClosedNotice,
}
