"""The notifications service's HTTP API: recipients' contacts and preferences, and what was sent
(or could not be) about a package."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from typing import Annotated, Literal, Self, get_args

import asyncpg
from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationInfo, field_validator, model_validator

from schemas import events
from services.notifications import channels, domain, handlers
from services.notifications import repository as repo
from services.runtime import identifiers, permissions
from services.runtime.auth import Principal, principal_of
from services.runtime.fields import WEBHOOK_URL_PATTERN, WHOLE_0_TO_9, DisplayName, Distinct
from services.runtime.http import ProblemError, check_webhook_url
from services.runtime.outbox import UnitOfWork, run_in_unit_of_work
from services.runtime.service import Service

RecipientKind = Literal["provider", "broker", "person", "brokerage_team"]
MessageName = events.MessageName
# Staff ids are free text at the brokerage (up to 100 characters): anything a path segment can hold.
RecipientId = Annotated[
    str,
    Path(
        pattern=r"^[^/\x00\s][^/\x00]{0,99}$",
        description="Provider id, staff id, brokerage-team, or the package id (person)",
    ),
]


Caller = Annotated[Principal, Depends(principal_of)]  # a member of the council's staff (an access token)


class RecipientIn(BaseModel):
    """A recipient's contact and preferences. For a person or their family, register it under the
    package id (``PUT /recipients/person/{package_id}``): it stays in this service's schema."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: DisplayName | None = Field(default=None, max_length=200)
    email: identifiers.Email = Field(default=None, max_length=254, description="Email address (domain in lower case)")
    phone: identifiers.MobilePhone = Field(
        default=None, description="UK mobile for text messages, stored in E.164 (+447700900123)"
    )
    webhook_url: str | None = Field(default=None, max_length=500, pattern=WEBHOOK_URL_PATTERN)
    webhook_secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        pattern=r"^[!-~]+$",
        description="The signing secret: 16 to 200 printable ASCII characters, no spaces",
    )
    channels: Distinct[domain.Channel] = Field(
        default_factory=list, max_length=5, description="In order of preference, each once; every usable one is used"
    )
    opted_out: Distinct[MessageName] = Field(
        default_factory=list,
        max_length=len(get_args(MessageName)),
        description="Messages not wanted, each once (essential ones still go)",
    )
    opted_in: Distinct[Literal["new_offer"]] = Field(
        default_factory=list, max_length=1, description="Optional messages wanted"
    )
    large_print: StrictBool = False
    language: str = Field(
        default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", description="BCP 47, e.g. en, cy, pl"
    )

    @field_validator("channels")
    @classmethod
    def _channels_have_addresses(cls, channels: list[str], info: ValidationInfo) -> list[str]:
        """Each chosen channel needs its address in the same contact: a channel without one would
        make every message to this recipient fail later ("no usable channel"), found by an attack."""
        given = info.data
        for channel in channels:
            wanted = domain.ADDRESS_FIELD.get(channel)
            # A field that failed its own check is not in ``given``: its own error says enough.
            if wanted in given and not given[wanted]:
                raise ValueError(f"{channel} is chosen but no {wanted} is given: add it, or leave {channel} out")
        return channels

    @model_validator(mode="after")
    def _webhook_pair(self) -> Self:
        if (self.webhook_url is None) != (self.webhook_secret is None):
            raise ValueError("webhook_url and webhook_secret go together")
        return self


class RecipientOut(BaseModel):
    kind: RecipientKind
    recipient_id: str
    name: str | None
    email: str | None
    phone: str | None
    webhook_url: str | None
    webhook_secret_set: bool
    channels: list[str]
    opted_out: list[str]
    opted_in: list[str]
    large_print: bool
    language: str
    updated_at: dt.datetime
    messages_planned_now: int = Field(
        default=0, description="Messages that had waited for this contact, now on their way"
    )


class DeliveryOut(BaseModel):
    delivery_id: uuid.UUID
    event_type: str
    message: str
    recipient_role: str
    recipient_id: str
    channel: str
    status: Literal["pending", "sent", "failed", "skipped", "awaiting_contact"]
    attempts: int
    reason: str | None = Field(description="The last error, or why it was failed, skipped or is waiting")
    notes: list[str] = Field(description="Preferences that could not be honoured, and why")
    template: str | None
    subject: str | None
    body: str | None
    large_print: bool
    created_at: dt.datetime
    sent_at: dt.datetime | None
    failed_at: dt.datetime | None


def _as_seen_by(caller: Principal, rows: list) -> list[DeliveryOut]:
    """Deliveries as ``caller`` may read them: an award's words carry its rate (pounds per hour), and
    operations follows the work, never prices (found by an attack on the providers service's offers)."""
    hidden = {} if caller.roles & permissions.SEES_BID_PRICES else {"subject": None, "body": None}
    return [DeliveryOut(**(dict(r) | hidden)) for r in rows]


class FailedDelivery(BaseModel):
    """A message that could not be delivered after its retries: no address and no body (the
    package page's notifications panel has those for the roles that may read them)."""

    delivery_id: uuid.UUID
    package_id: uuid.UUID
    event_type: str
    message: str
    recipient_role: str
    channel: str
    attempts: int
    reason: str | None = Field(description="The last error")
    created_at: dt.datetime
    failed_at: dt.datetime | None


class FailedDeliveries(BaseModel):
    count: int = Field(description="Every delivery that failed for good")
    deliveries: list[FailedDelivery] = Field(description="The latest of them, newest first")


def _out(row: asyncpg.Record, planned: int = 0) -> RecipientOut:
    values = {k: v for k, v in dict(row).items() if k != "webhook_secret"}
    return RecipientOut(**values, webhook_secret_set=bool(row["webhook_secret"]), messages_planned_now=planned)


# What an id of each kind looks like (schemas/events.py): a provider's id, a member of staff's
# username, the team's id; a person's contact goes under the package id (a UUID, stored in its
# canonical form whatever form it was sent in).
_ID_PATTERNS = {
    "provider": re.compile(events.PROVIDER_ID_PATTERN.strip("^$")),
    "broker": re.compile(events.STAFF_ID_PATTERN.strip("^$")),
    "brokerage_team": re.compile(events.STAFF_ID_PATTERN.strip("^$")),
}


def _recipient_id(kind: str, recipient_id: str) -> str:
    """The id as stored: a person's package id in its canonical form, any other kind's as sent when it
    is an id of that kind. Raises a 422 naming ``recipient_id`` otherwise (found by an attack: a
    provider "x\\ty", a bidi override and an upper-case UUID were stored, the last never found again)."""
    if kind == "person":
        try:
            return str(uuid.UUID(recipient_id))
        except ValueError:
            raise ProblemError(
                422, "a person's contact is registered under the package id (a UUID)", field="recipient_id"
            ) from None
    if not _ID_PATTERNS[kind].fullmatch(recipient_id):
        raise ProblemError(
            422,
            f"not a {kind.replace('_', ' ')} id: letters, digits and - . _ @ only"
            + (" (a provider's id is lower case)" if kind == "provider" else ""),
            field="recipient_id",
        )
    return recipient_id


def _check_reachable(chosen: Sequence[str], usable: frozenset[str]) -> None:
    """422 naming ``channels`` for a contact no message could reach: no channel chosen, or none of
    those chosen configured here (found by an attack: such contacts were stored and every message to
    them failed, "no usable channel"). A chosen channel not configured beside one that is stays: the
    message goes by the one that is, and says so."""
    configured_here = ", ".join(sorted(usable))
    if not chosen:
        raise ProblemError(422, f"choose at least one channel (configured here: {configured_here})", field="channels")
    if not usable.intersection(chosen):
        raise ProblemError(
            422,
            f"none of {', '.join(chosen)} is configured in this installation (configured here: {configured_here})",
            field="channels",
        )


def build_router(service: Service, rules: handlers.NotificationRules) -> APIRouter:
    router = APIRouter()
    usable = channels.configured(service.settings)

    @router.put(
        "/recipients/{kind}/{recipient_id}",
        tags=["recipients"],
        summary="Register or replace a contact and preferences",
    )
    async def put_recipient(
        kind: RecipientKind,
        recipient_id: RecipientId,
        caller: Caller,
        body: Annotated[RecipientIn, Body(default_factory=RecipientIn)],
    ) -> RecipientOut:
        """Register or replace a contact (200). Refused: 403 when the caller's roles may not set a
        contact of this kind (services/runtime/permissions.py CONTACT_WRITERS: a provider's and the
        brokerage team's by the council's administrators, a broker's by themselves or a manager);
        422 naming ``recipient_id`` when it is not an id of its kind; 422 naming ``channels`` when none
        is chosen, a chosen one lacks its address, or none chosen is configured in this installation
        (a contact that could never be reached: its messages, essential ones too, would all fail)."""
        recipient_id = _recipient_id(kind, recipient_id)
        if not permissions.may_write_contact(kind, recipient_id, caller.actor, caller.roles):
            raise ProblemError(403, f"your roles do not allow setting a {kind}'s contact", code="not-your-contact")
        _check_reachable(body.channels, usable)
        if body.webhook_url:
            await check_webhook_url(body.webhook_url, service.settings.outbound_policy())
        values = body.model_dump()
        if values["webhook_secret"] is not None:  # kept sealed (services/runtime/sealing.py)
            values["webhook_secret"] = service.secrets.seal(values["webhook_secret"])

        async def register(uow: UnitOfWork) -> tuple[int, asyncpg.Record | None]:
            planned = await handlers.register_recipient(uow, rules, kind, recipient_id, values)
            return planned, await repo.recipient(uow.conn, kind, recipient_id)

        planned, row = await run_in_unit_of_work(service.pool, register)
        if row is None:  # registered a moment ago, in this transaction
            raise LookupError(f"no {kind} recipient {recipient_id}")
        return _out(row, planned)

    @router.get(
        "/recipients/{kind}/{recipient_id}",
        tags=["recipients"],
        summary="A registered contact and preferences",
        responses={404: {"description": "Not registered"}},
    )
    async def get_recipient(kind: RecipientKind, recipient_id: RecipientId) -> RecipientOut:
        recipient_id = _recipient_id(kind, recipient_id)  # read as it was registered
        row = await repo.recipient(service.pool, kind, recipient_id)
        if row is None:
            raise ProblemError(404, f"no {kind} {recipient_id} registered")
        return _out(row)

    @router.get(
        "/packages/{package_id}/notifications",
        tags=["deliveries"],
        summary="Every message about a package: to whom, by which channel, and whether it arrived",
        description="The words sent (`subject`, `body`) only for roles that see commercial data "
        "(services/runtime/permissions.py: SEES_BID_PRICES): an award's or an above-rate bid's carry its "
        "rate. For the others (operations) they are null: who was told, how and whether it arrived.",
    )
    async def notifications(package_id: uuid.UUID, caller: Caller) -> list[DeliveryOut]:
        return _as_seen_by(caller, await repo.deliveries_for(service.pool, package_id))

    @router.get(
        "/packages/{package_id}/confirmations",
        tags=["deliveries"],
        summary="The placement's confirmations (the PackagePlaced part of /notifications)",
    )
    async def confirmations(package_id: uuid.UUID, caller: Caller) -> list[DeliveryOut]:
        return _as_seen_by(caller, await repo.deliveries_for(service.pool, package_id, "PackagePlaced"))

    @router.get(
        "/deliveries/failed",
        tags=["deliveries"],
        summary="Deliveries that failed for good: how many, and the latest (operations' health at a glance)",
    )
    async def failed(
        limit: Annotated[int, Query(ge=1, le=500, description="How many of the latest to list"), WHOLE_0_TO_9] = 50,
    ) -> FailedDeliveries:
        count, rows = await repo.failed_deliveries(service.pool, limit)
        return FailedDeliveries(count=count, deliveries=[FailedDelivery(**dict(r)) for r in rows])

    return router
