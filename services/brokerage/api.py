"""The brokerage team's HTTP API: request a package, read it with its status and timeline.

Personal details come in with the request and are stored in the brokerage schema only; the
package read (``GET /packages/{id}``) leaves them out, and they have their own endpoint so
that every read of them is a deliberate one.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args

import asyncpg
from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from schemas.events import PackageSpec, ProviderId, VisitPattern, ZoneId
from schemas.vocabulary import (
    STAFF_END_REASONS,
    Band,
    CancelReason,
    CareNeed,
    ChangeReason,
    EndReason,
    ExceptionDecisionReason,
    Funder,
    Funding,
    HandBackReason,
    PauseReason,
    ReviewOutcome,
    TechnologyEnabledCare,
    TopUpPayer,
    Urgency,
)
from services.brokerage import domain, explanation, handlers
from services.brokerage import repository as repo
from services.runtime import clock, idempotency, identifiers, permissions
from services.runtime.auth import Principal, principal_of
from services.runtime.db import fetch_one
from services.runtime.fields import DIGITS_0_TO_9, WHOLE_0_TO_9, Day, DisplayName, Distinct, FreeText
from services.runtime.http import ProblemError
from services.runtime.outbox import UnitOfWork, run_in_unit_of_work
from services.runtime.permissions import SEES_BID_PRICES, priced
from services.runtime.service import Service
from services.runtime.spreadsheets import safe_cell

# The words a member of staff may add to a reason code: kept in the brokerage's tables only, never
# put on an event (they can name the person; docs/guide/reason-codes.md).
ReasonText = Annotated[
    FreeText | None,
    Field(
        default=None,
        max_length=1000,
        description="Optional words beside the code; kept in the brokerage only, never on an event",
    ),
]


class Person(BaseModel):
    """The person the care is for. Never leaves the brokerage service except to the winning provider."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    full_name: DisplayName = Field(min_length=1, max_length=200)
    address: FreeText = Field(min_length=1, max_length=500)
    postcode: identifiers.Postcode = Field(description='Full UK postcode, stored as "LE11 3AB" whatever the spacing')
    phone: identifiers.Phone = Field(default=None, description="UK phone number, stored in E.164 (+441164960123)")
    email: identifiers.Email = Field(default=None, max_length=254, description="Email address (domain in lower case)")
    nhs_number: identifiers.NhsNumber = Field(
        description="10 digits with a correct check digit; spaces and dashes allowed, stored as ten digits"
    )
    date_of_birth: Day | None = None
    care_notes: FreeText | None = Field(default=None, max_length=5000)

    @field_validator("date_of_birth")
    @classmethod
    def _dob(cls, v: dt.date | None) -> dt.date | None:
        if v is not None and not (dt.date(1900, 1, 1) <= v <= clock.uk_today()):
            raise ValueError("date of birth must be between 1900-01-01 and today")
        return v


class DischargeRequest(BaseModel):
    """The Discharge Hub's part of a request for someone leaving hospital (decision record 0097):
    codes only - no name, no bed number, no clinical words."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    hospital: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{1,39}$",
        description="Hospital code from deploy/reference/discharge.yaml (GET /reference/hospitals), e.g. uhl-lri",
    )
    ward: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,15}$", description="Ward code of that hospital, e.g. W17")
    pathway: StrictInt = Field(
        ge=0,
        le=3,
        description="Discharge pathway: 1 home with support, the only one brokered as home care (0 home with no "
        "new support, 2 a rehabilitation bed and 3 a care home are refused, naming their route: decision 0120)",
    )
    medically_fit_on: Day = Field(description="The day the person became (or becomes) medically fit: a UK date")
    reablement_potential: StrictBool = Field(
        default=False, description="The Hub saw reablement potential: pathway 1 goes to in-house reablement first"
    )
    nhs_funded_weeks: StrictInt = Field(
        default=4, ge=0, le=8, description="Weeks of NHS discharge funding from the start date, then the council"
    )


class PackageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    zone: ZoneId = Field(max_length=64, description="Zone id from the framework's reference data, e.g. charnwood-north")
    band: Band
    postcode_district: identifiers.PostcodeDistrict = Field(description="Outward code of the postcode, e.g. LE11")
    hours_per_week: Annotated[Decimal, Field(gt=0, le=168, max_digits=5, decimal_places=2), DIGITS_0_TO_9]
    visits: VisitPattern
    needs: Distinct[CareNeed] = Field(min_length=1, max_length=len(CareNeed), description="The care needs, each once")
    urgency: Urgency
    start_date: Day
    funding: Funding = Funding.council
    person: Person
    discharge: DischargeRequest | None = Field(
        default=None, description="For a hospital discharge (urgency hospital_discharge): the Discharge Hub's details"
    )

    @field_validator("needs")
    @classmethod
    def _unique_needs(cls, v: list[CareNeed]) -> list[CareNeed]:
        return sorted(set(v))

    @field_validator("start_date")
    @classmethod
    def _start(cls, v: dt.date) -> dt.date:
        today = clock.uk_today()  # the UK date: a request at 00:30 BST for "today" is for today
        if v < today - dt.timedelta(days=1):
            raise ValueError("start date is in the past")
        if v > today + dt.timedelta(days=366):
            raise ValueError("start date is more than a year ahead")
        return v

    @model_validator(mode="after")
    def _hours_match_visits(self) -> PackageRequest:
        # Commissioned hours are carer hours: calls x minutes x carers x days. A mismatch is
        # almost always a typing mistake on the form, so it is refused rather than guessed.
        mismatch = domain.hours_mismatch(self.hours_per_week, self.visits)
        if mismatch is not None:
            raise ValueError(mismatch)
        return self


# Who acts is the access token's user (services/runtime/auth.py), never a field of these bodies.


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: CancelReason = Field(description="Why, as a code (docs/guide/reason-codes.md)")
    reason_text: ReasonText = None


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    # Not in the future, nor before the request or the last provider's last day: the domain's
    # refusals, each with its code (services/brokerage/domain.py: start_refusal).
    started_on: Day


class HandBackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    notice_ends_on: Day = Field(description="The provider's last day of care")
    reason: HandBackReason = Field(description="Why, as a code (docs/guide/reason-codes.md)")
    reason_text: ReasonText = None


class EndRequest(BaseModel):
    """Ending a running package (decision record 0078)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: EndReason = Field(description="Why, as a code (docs/guide/pauses-and-endings.md)")
    effective_date: Day = Field(description="The first day without care (a UK date): the provider's hours end")
    reason_text: ReasonText = None

    @field_validator("reason")
    @classmethod
    def _staff_reason(cls, v: EndReason) -> EndReason:
        if v not in STAFF_END_REASONS:
            raise ValueError(f"{v.value} is recorded by the platform itself, not chosen")
        return v


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: PauseReason = Field(description="Why, as a code: admitted_to_hospital, respite_stay, other")
    paused_on: Day = Field(description="The first day without visits (a UK date), not in the future")


class ChangeRequest(BaseModel):
    """A change to a started package (decision record 0082): the new hours and visit pattern, and
    the needs if they change. Who asks is the access token's user, never a field here."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    hours_per_week: Annotated[Decimal, Field(gt=0, le=168, max_digits=5, decimal_places=2), DIGITS_0_TO_9] = Field(
        description="Carer hours per week, matching the visit pattern"
    )
    visits: VisitPattern = Field(description="Calls per day, minutes per call, carers per call, days per week")
    needs: Distinct[CareNeed] | None = Field(
        default=None,
        min_length=1,
        max_length=len(CareNeed),
        description="The needs after the change, each once (unset: as they are)",
    )
    reason: ChangeReason = Field(description="Why, as a code (docs/guide/package-changes.md)")
    effective_date: Day = Field(description="The first day of the new pattern (a UK date)")
    discussed_with_person: StrictBool | None = Field(
        default=None, description="Discussed with the person or their family: required true for a reduction"
    )
    reason_text: ReasonText = None


class ReviewChangeRequest(BaseModel):
    """The change a review decided: through the change flow (decision record 0082), reason
    ``review_outcome``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    hours_per_week: Annotated[Decimal, Field(gt=0, le=168, max_digits=5, decimal_places=2), DIGITS_0_TO_9] = Field(
        description="Carer hours per week, matching the visit pattern"
    )
    visits: VisitPattern
    needs: Distinct[CareNeed] | None = Field(
        default=None,
        min_length=1,
        max_length=len(CareNeed),
        description="The needs after it, each once (unset: as now)",
    )
    effective_date: Day = Field(description="The first day of the new pattern (a UK date)")
    discussed_with_person: StrictBool | None = Field(
        default=None, description="Discussed with the person or their family: required true for a reduction"
    )


class ReviewEndRequest(BaseModel):
    """The ending a review decided: through the ending flow (decision record 0078)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: EndReason = Field(description="Why, as a code (docs/guide/pauses-and-endings.md)")
    effective_date: Day = Field(description="The first day without care (a UK date)")

    @field_validator("reason")
    @classmethod
    def _staff_reason(cls, v: EndReason) -> EndReason:
        if v not in STAFF_END_REASONS:
            raise ValueError(f"{v.value} is recorded by the platform itself, not chosen")
        return v


class ReviewRequest(BaseModel):
    """A review's outcome (decision record 0088). Who reviewed is the access token's user."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    outcome: ReviewOutcome = Field(description="no_change, changed, technology_enabled_care or ended")
    reviewed_on: Day = Field(description="The day of the review (a UK date), not in the future")
    change: ReviewChangeRequest | None = Field(
        default=None, description="For changed and technology_enabled_care: the new hours and visits"
    )
    end: ReviewEndRequest | None = Field(default=None, description="For ended: the reason and effective date")
    technology: Distinct[TechnologyEnabledCare] = Field(
        default_factory=list, max_length=10, description="For technology_enabled_care: the equipment, each once"
    )
    notes: ReasonText = None


class FundingShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    funder: Funder
    percent: Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2), DIGITS_0_TO_9] = Field(
        description="Per cent of the cost"
    )


class CallFundingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    call: StrictInt = Field(
        ge=1, le=6, description="A call of each day in the visit pattern: 1 the first, in time order"
    )
    funder: Funder = Field(description="Who pays that call whole (never joint; not the period's own funder)")


class FundingPeriodRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    effective_from: Day = Field(description="The period's first day (a UK date); it runs until the next one's")
    funder: Funder
    shares: list[FundingShareRequest] | None = Field(
        default=None,
        max_length=6,
        description="For joint funding: each funder's per cent (of the week less any named calls), adding up to 100",
    )
    calls: list[CallFundingRequest] = Field(
        default_factory=list,
        max_length=5,
        description="Calls paid whole by a funder of their own (decision 0121), e.g. the NHS paying call 1, the "
        "morning call; each call is 1 / calls_per_day of the week's cost",
    )


class FundingRequest(BaseModel):
    """A package's funding, whole (decision record 0089): replaces the record before it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    periods: list[FundingPeriodRequest] = Field(min_length=1, max_length=24)
    top_up_paid_by: TopUpPayer | None = Field(
        default=None,
        description="The person chose a provider above the band rate: who pays the difference (else an "
        "above-rate exception the council approved pays it)",
    )
    reason_text: ReasonText = None


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    resumed_on: Day = Field(description="The first day of visits again (a UK date)")


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: ExceptionDecisionReason = Field(description="Why, as a code: recorded with the decision")
    reason_text: ReasonText = None


class PackageCreated(BaseModel):
    package_id: uuid.UUID
    status: str
    links: dict[str, str]


def _validate_against_framework(request: PackageRequest, rules: handlers.BrokerageRules) -> None:
    zones = rules.framework.zones
    if request.zone not in zones:
        raise ProblemError(
            422,
            f"unknown zone {request.zone!r}; known zones: {', '.join(sorted(zones))}",
            field="zone",
            code="unknown-zone",
        )
    if request.postcode_district not in zones[request.zone].postcode_districts:
        elsewhere = rules.framework.zone_of_district(request.postcode_district)
        hint = f"it is in {', '.join(elsewhere)}" if elsewhere else "it is in no zone of this framework"
        raise ProblemError(
            422,
            f"postcode district {request.postcode_district} is not in zone {request.zone}; {hint}",
            field="postcode_district",
            code="postcode-mismatch",
        )
    # Decision record 0120: the urgency and the discharge block go together, both ways (the other way,
    # a discharge with another urgency, is the command's refusal: handlers._discharge_refusal).
    if request.urgency is Urgency.hospital_discharge and request.discharge is None:
        raise ProblemError(
            422,
            "a hospital discharge needs the Discharge Hub's details: hospital, ward, pathway, medically-fit date",
            field="discharge",
        )
    if identifiers.postcode_district_of(request.person.postcode) != request.postcode_district:
        raise ProblemError(
            422,
            f"the person's postcode {request.person.postcode} is not in district {request.postcode_district}",
            field="person.postcode",
            code="postcode-mismatch",
        )


def _package_view(
    row: asyncpg.Record,
    timeline: list[asyncpg.Record],
    rounds: list[asyncpg.Record],
    answers: list[asyncpg.Record],
    *,
    prices: bool,
    changes: list[asyncpg.Record] = (),  # type: ignore[assignment]
    reviews: list[asyncpg.Record] = (),  # type: ignore[assignment]
    discharge: asyncpg.Record | None = None,
) -> dict[str, Any]:
    """``prices``: the caller's role may see commercial data (bids' and the award's hourly rates);
    for the others they are null (services/runtime/permissions.py: SEES_BID_PRICES)."""
    return {
        "package_id": str(row["package_id"]),
        "status": row["status"],
        "package": json.loads(row["spec"]),
        "requested_by": row["requested_by"],
        "policy": row["policy"],
        "rate_card": row["rate_card"],
        "band_rate": str(row["band_rate"]),
        "current_round": row["current_round"],
        "cycle": row["cycle"],
        "priority": row["priority"],
        "continuity": row["continuity"],
        "current_tier": row["current_tier"],
        "window_closes_at": row["window_closes_at"],
        "provider_id": row["provider_id"],
        "hourly_rate": None if row["hourly_rate"] is None or not prices else str(row["hourly_rate"]),
        "requested_at": row["requested_at"],
        "placed_at": row["placed_at"],
        "unplaced_at": row["unplaced_at"],
        # The code is on PackageCancelled; the broker's words only here (docs/guide/reason-codes.md).
        "cancelled_at": row["cancelled_at"],
        "cancel_reason": row["cancel_reason"],
        "cancel_reason_text": row["cancel_reason_text"],
        "started_on": row["started_on"],
        # Pauses and endings (decision record 0078).
        "paused_on": row["paused_on"],
        "pause_reason": row["pause_reason"],
        "hold_expires_at": row["hold_expires_at"],
        "ended_on": row["ended_on"],
        "end_reason": row["end_reason"],
        "end_reason_text": row["end_reason_text"],
        # Changes to a running package (decision record 0082): the one awaiting its provider, and who
        # carries on at the old hours while the package is re-brokered after a declined change.
        "pending_change_id": None if row["pending_change_id"] is None else str(row["pending_change_id"]),
        "carried_on_by": row["carried_on_by"],
        # Reviews (decision record 0088): when the next is due, and those held.
        # Only a running package has a review due (an ended, cancelled or re-brokered one keeps the
        # date it had, unshown: found by a new user; the queue's rule, repo.REVIEWABLE).
        "review_due_on": row["review_due_on"] if row["status"] in repo.REVIEWABLE_STATUSES else None,
        "reviews": [
            {
                "review_id": str(r["review_id"]),
                "outcome": r["outcome"],
                "due_on": r["due_on"],
                "reviewed_on": r["reviewed_on"],
                "technology": list(r["technology"]),
                "change_id": None if r["change_id"] is None else str(r["change_id"]),
                "next_review_due_on": r["next_review_due_on"],
                "notes": r["notes"],
                "reviewed_by": r["reviewed_by"],
                "recorded_at": r["recorded_at"],
            }
            for r in reviews
        ],
        "funding_revision": row["funding_revision"],
        # Hospital discharge (decision record 0097): the Hub's codes and any in-house service covering it.
        "discharge": _discharge_view(discharge),
        "changes": [
            {
                "change_id": str(c["change_id"]),
                "provider_id": c["provider_id"],
                "status": c["status"],
                "previous_hours_per_week": str(c["previous_hours"]),
                "hours_per_week": str(c["hours_per_week"]),
                "package": json.loads(c["spec"]),
                "reason": c["reason"],
                "reason_text": c["reason_text"],
                "discussed_with_person": c["discussed_with_person"],
                "effective_date": c["effective_date"],
                "changed_by": c["changed_by"],
                "requested_at": c["requested_at"],
                "window_closes_at": c["window_closes_at"],
                "answered_at": c["answered_at"],
                "decline_reason": c["decline_reason"],
            }
            for c in changes
        ],
        "offer_rounds": [
            {
                "offer_round": r["offer_round"],
                "tier": r["tier"],
                "provider_ids": list(r["provider_ids"]),
                "excluded": json.loads(r["excluded"]),
                "opened_at": r["opened_at"],
                "window_closes_at": r["window_closes_at"],
                "closed_at": r["closed_at"],
                "outcome": r["outcome"],
                "tie_break": json.loads(r["tie_break"]) if r["tie_break"] else None,
                "answers": [
                    priced(
                        {
                            k: str(a[k]) if isinstance(a[k], Decimal) else a[k]
                            for k in (
                                "provider_id",
                                "kind",
                                "hourly_rate",
                                "earliest_start",
                                "reason",
                                "reason_text",
                                "adapter",
                                "answered_at",
                                "late",
                            )
                        },
                        prices,
                    )
                    for a in answers
                    if a["offer_round"] == r["offer_round"]
                ],
            }
            for r in rounds
        ],
        # A step's record names the award's or an above-rate bid's rate: only for those who see prices
        # (found by an attack: operations read them here after the rest of the view hid them).
        "timeline": [
            {"at": t["at"], "stage": t["stage"], "detail": priced(json.loads(t["detail"]), prices)} for t in timeline
        ],
    }


def _discharge_view(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "hospital": row["hospital"],
        "ward": row["ward"],
        "pathway": row["pathway"],
        "medically_fit_on": row["medically_fit_on"],
        "reablement_potential": row["reablement_potential"],
        "nhs_funded_weeks": row["nhs_funded_weeks"],
        "fallback_due_at": row["fallback_due_at"],
        "fallback_outcome": row["fallback_outcome"],
        "service": row["service"],
        "step": row["step"],
        "referred_on": row["referred_on"],
        "released_on": row["released_on"],
    }


Caller = Annotated[Principal, Depends(principal_of)]


STATUSES = "requested|offered|placed|unplaced|started|cancelled|awaiting_approval|paused|ended"
_HEX_PREFIX = re.compile(r"^[0-9a-f]{4,8}(-[0-9a-f]{0,4}){0,4}[0-9a-f-]*$")


def _search_of(q: str | None) -> tuple[str, str] | None:
    """What a board search means: ``("package_id", prefix)``, ``("nhs_number", ten digits)`` or
    ``("full_name", text)``; None without a search. Raises a 422 naming ``q`` for text that is
    none of them (a malformed NHS number, fewer than 3 letters of a name)."""
    if q is None or not q.strip():
        return None
    text = " ".join(q.split())
    compact = text.replace(" ", "").replace("-", "")
    if compact.isdigit() and len(compact) == 10:
        try:
            return ("nhs_number", identifiers.normalise_nhs_number(compact))
        except ValueError as exc:
            raise ProblemError(422, f"search: {exc}", field="q") from None
    if _HEX_PREFIX.match(text.lower()) and any(c.isdigit() for c in text):  # "Bead", "Cafe": names
        return ("package_id", text.lower())
    if any(c.isdigit() for c in text):
        raise ProblemError(
            422, "search: a package id's first characters (0-9, a-f), an NHS number (10 digits) or a name", field="q"
        )
    # The LIKE wildcards are taken out before the length is judged: "%%%" was a search for everyone.
    name = " ".join(text.replace("%", "").replace("_", "").split())
    if sum(c.isalpha() for c in name) < 3:
        raise ProblemError(422, "search: at least 3 letters of a name", field="q")
    return ("full_name", name)


def build_router(service: Service, rules: handlers.BrokerageRules) -> APIRouter:
    router = APIRouter(prefix="/packages", tags=["packages"])

    @router.post(
        "",
        status_code=201,
        response_model=PackageCreated,
        summary="Request a home care package",
        responses={
            200: {
                "description": "The same request again (same Idempotency-Key, same broker): the package it created, "
                "with `Idempotent-Replayed: true`"
            },
        },
    )
    async def create_package(
        request: PackageRequest,
        response: Response,
        caller: Caller,
        idempotency_key: idempotency.IdempotencyKey = None,
    ) -> PackageCreated:
        """Store a package request and offer it to the first tier (201). With an ``Idempotency-Key``
        (services/runtime/idempotency.py, decision 0094: one rule in every service), the same
        request from the same caller within 7 days returns the package it created (200), and the
        key with another request is a 422 naming the header."""
        _validate_against_framework(request, rules)
        spec = PackageSpec.model_validate(request.model_dump(exclude={"person", "discharge"}))
        discharge = handlers.DischargeInput(**request.discharge.model_dump()) if request.discharge is not None else None
        request_hash = idempotency.fingerprint("POST /packages", request)

        async def requested(uow: UnitOfWork) -> dict[str, Any]:
            package_id, status = await handlers.request_package(
                uow,
                rules,
                spec=spec,
                person=request.person.model_dump(),
                requested_by=caller.actor,
                discharge=discharge,
            )
            return {"package_id": str(package_id), "status": status}

        try:
            created, replayed = await run_in_unit_of_work(
                service.pool,
                lambda uow: idempotency.once(
                    uow,
                    scope=caller.actor,
                    key=idempotency_key,
                    request_hash=request_hash,
                    command=lambda: requested(uow),
                ),
            )
        except idempotency.KeyReused as exc:
            raise ProblemError(422, str(exc), field=idempotency.HEADER, code="idempotency-key-reused") from None
        except handlers.Refused as exc:  # a discharge's fault (decision 0097): nothing was written
            refusal = exc.refusal
            raise ProblemError(refusal.status, refusal.message, field=refusal.field, code=refusal.code) from None
        if replayed:
            response.status_code = 200
            response.headers[idempotency.REPLAYED_HEADER] = "true"
        package_id, status = uuid.UUID(created["package_id"]), created["status"]
        return PackageCreated(
            package_id=package_id,
            status=status,
            links={"self": f"/packages/{package_id}", "person": f"/packages/{package_id}/person"},
        )

    @router.get(
        "/{package_id}",
        summary="A package with its status, offer rounds and timeline",
        description="Bids' and the award's hourly rates are null for roles without the right to commercial data.",
    )
    async def read_package(package_id: uuid.UUID, caller: Caller) -> dict:
        async with service.pool.acquire() as conn:
            row = await repo.get_package(conn, package_id)
            if row is None:
                raise ProblemError(404, f"no package {package_id}")
            timeline = await conn.fetch(
                "SELECT at, stage, detail FROM timeline WHERE package_id = $1 ORDER BY id", package_id
            )
            rounds = await conn.fetch(
                "SELECT * FROM offer_rounds WHERE package_id = $1 ORDER BY offer_round", package_id
            )
            answers = await conn.fetch("SELECT * FROM answers WHERE package_id = $1 ORDER BY answered_at", package_id)
            changes = await repo.changes_of(conn, package_id)
            reviews = await repo.reviews_of(conn, package_id)
            discharge = await repo.discharge_of(conn, package_id) if row["urgency"] == "hospital_discharge" else None
        return _package_view(
            row,
            timeline,
            rounds,
            answers,
            prices=bool(caller.roles & SEES_BID_PRICES),
            changes=changes,
            reviews=reviews,
            discharge=discharge,
        )

    @router.get(
        "/{package_id}/explanation", summary="Why the package went where it did: the decision record, explained"
    )
    async def explain(
        package_id: uuid.UUID,
        provider_id: str | None = Query(None, max_length=64, description="A bidder: adds what that provider is told"),
    ) -> dict:
        async with service.pool.acquire() as conn:
            row = await repo.get_package(conn, package_id)
            if row is None:
                raise ProblemError(404, f"no package {package_id}")
            rounds = await conn.fetch(
                "SELECT * FROM offer_rounds WHERE package_id = $1 ORDER BY offer_round", package_id
            )
            answers = await conn.fetch("SELECT * FROM answers WHERE package_id = $1 ORDER BY answered_at", package_id)
            names = {
                r["provider_id"]: r["name"]
                for r in await conn.fetch("SELECT provider_id, profile->>'name' AS name FROM provider_view")
            }
            exceptions = await conn.fetch("SELECT * FROM exceptions WHERE package_id = $1 ORDER BY id", package_id)
            approvals = await conn.fetch(
                "SELECT * FROM exception_approvals WHERE package_id = $1 ORDER BY approval_id", package_id
            )
        record = explanation.decision_record(row, rounds, answers, names, exceptions, approvals)
        placed = await service.pool.fetchval(
            "SELECT detail->>'start_date' FROM timeline WHERE package_id = $1 AND stage = 'placed'", package_id
        )
        body = {
            "record": record,
            "explanation": {
                "broker": explanation.for_broker(record, names),
                "family": explanation.for_family(record, names, placed or json.loads(row["spec"])["start_date"]),
            },
        }
        if provider_id is not None:
            # Only what that bidder may be told: no record, no other bids, no winning price.
            told = explanation.for_losing_bidder(record, provider_id)
            if told is None:
                raise ProblemError(
                    404, f"{provider_id} did not bid on package {package_id} or won it", field="provider_id"
                )
            return {"package_id": str(package_id), "provider_id": provider_id, "explanation": {"losing_bidder": told}}
        return body

    async def act(
        package_id: uuid.UUID,
        action: Callable[[UnitOfWork], Awaitable[object]],
        *,
        prefixes: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Run a broker action in a unit of work; a refusal becomes its 409/422/403/404 naming the
        field. ``prefixes``: what to put before a refused field's name, by the step refusing it (a
        review's change: ``change.hours_per_week``)."""
        try:
            await run_in_unit_of_work(service.pool, action)
        except handlers.Refused as exc:
            refusal = exc.refusal
            field = refusal.field
            if prefixes and exc.step in prefixes and field not in ("status", "change") and "." not in field:
                field = prefixes[exc.step] + field
            # A refusal's own code (hold-expired, already-approved) is kept: it had been replaced by
            # the generic one for every 409 (found by an attack).
            code = refusal.code or ("action-not-allowed" if refusal.status == 409 else None)
            raise ProblemError(refusal.status, refusal.message, field=field, code=code) from None
        except handlers.AlreadyApproved as exc:
            raise ProblemError(409, str(exc), field="decision", code="already-approved") from None
        except handlers.ActionRefused as exc:
            # Not allowed in the package's state: the field at fault is its status, as for the
            # domain's own status refusals (found by a new user: these 409s named no field).
            raise ProblemError(409, str(exc), field="status", code="action-not-allowed") from None
        except handlers.NotDelegated as exc:
            raise ProblemError(403, str(exc), code="not-delegated") from None
        except LookupError as exc:
            raise ProblemError(404, str(exc)) from None
        row = await repo.get_package(service.pool, package_id)
        if row is None:
            raise ProblemError(404, f"no package {package_id}")
        return {"package_id": str(package_id), "status": row["status"]}

    @router.post(
        "/{package_id}/cancel",
        summary="Cancel a package before care starts",
        responses={409: {"description": "Already cancelled or started"}},
    )
    async def cancel(package_id: uuid.UUID, body: CancelRequest, caller: Caller) -> dict:
        return await act(
            package_id,
            lambda uow: handlers.cancel(
                uow, package_id, reason=body.reason, reason_text=body.reason_text, cancelled_by=caller.actor
            ),
        )

    @router.post(
        "/{package_id}/start",
        summary="Record that care has started",
        responses={
            409: {"description": "The package is not placed"},
            422: {
                "description": "The request is not valid (errors names each field), or started_on is in the "
                "future or further back than the backdating limit"
            },
        },
    )
    async def start(package_id: uuid.UUID, body: StartRequest, caller: Caller) -> dict:
        return await act(
            package_id,
            lambda uow: handlers.record_start(
                uow,
                package_id,
                started_on=body.started_on,
                recorded_by=caller.actor,
                reviews=rules.reviews,
                date_limits=rules.date_limits,
            ),
        )

    @router.post(
        "/{package_id}/reoffer",
        summary="Offer an unplaced package again now, tiers from the top",
        responses={409: {"description": "The package is not unplaced"}},
    )
    async def reoffer(package_id: uuid.UUID, caller: Caller) -> dict:
        return await act(package_id, lambda uow: handlers.reoffer(uow, rules, package_id, requested_by=caller.actor))

    @router.post(
        "/{package_id}/hand-back",
        summary="Record a provider handing the package back, with notice",
        responses={
            409: {"description": "The package is not placed or started"},
            422: {
                "description": "The request is not valid (errors names each field), or notice_ends_on is "
                "further back or ahead than the actions' date limits"
            },
        },
    )
    async def hand_back(package_id: uuid.UUID, body: HandBackRequest, caller: Caller) -> dict:
        return await act(
            package_id,
            lambda uow: handlers.hand_back(
                uow,
                rules,
                package_id,
                notice_ends_on=body.notice_ends_on,
                reason=body.reason,
                reason_text=body.reason_text,
                recorded_by=caller.actor,
            ),
        )

    @router.post(
        "/{package_id}/end",
        summary="End a running package for good, from an effective date",
        description="For a started or paused package; one placed but not started is cancelled instead. The "
        "provider's hours are released on the effective date (decision record 0078).",
        responses={
            409: {"description": "The package is not running (field: status)"},
            422: {"description": "The effective date is before the start, or too far back or ahead"},
        },
    )
    async def end(package_id: uuid.UUID, body: EndRequest, caller: Caller) -> dict:
        return await act(
            package_id,
            lambda uow: handlers.end_package(
                uow,
                rules,
                package_id,
                reason=body.reason,
                effective_date=body.effective_date,
                reason_text=body.reason_text,
                ended_by=caller.actor,
            ),
        )

    @router.post(
        "/{package_id}/pause",
        summary="Pause a started package (a hospital admission, a respite stay); the provider keeps it",
        description="The provider keeps the package and its hours for the configured hold; with no resume by "
        "then the package ends (hospital_stay_exceeded_hold).",
        responses={
            409: {"description": "The package is not started (field: status)"},
            422: {"description": "The date is before the start, in the future, or too long ago"},
        },
    )
    async def pause(package_id: uuid.UUID, body: PauseRequest, caller: Caller) -> dict:
        return await act(
            package_id,
            lambda uow: handlers.pause(
                uow, rules, package_id, reason=body.reason, paused_on=body.paused_on, paused_by=caller.actor
            ),
        )

    @router.post(
        "/{package_id}/resume",
        summary="Resume a paused package with the same provider",
        responses={
            409: {"description": "The package is not paused (field: status)"},
            422: {"description": "The date is before the pause began, or too far back or ahead"},
        },
    )
    async def resume(package_id: uuid.UUID, body: ResumeRequest, caller: Caller) -> dict:
        return await act(
            package_id,
            lambda uow: handlers.resume(uow, rules, package_id, resumed_on=body.resumed_on, resumed_by=caller.actor),
        )

    @router.post(
        "/{package_id}/changes",
        summary="Change a started package: hours, visit pattern, needs; offered to its provider first",
        description="The provider holding the package is offered the change through its adapter; accepted, the "
        "package changes (PackageChanged); declined or unanswered within the window, the package is re-brokered "
        "with the new pattern while the provider carries on (decision record 0082).",
        status_code=202,
        responses={
            409: {"description": "The package is not started (field: status) or a change is pending (field: change)"},
            422: {
                "description": "Hours not matching the visit pattern, a change that changes nothing, a reduction not "
                "discussed with the person or family, or an effective date out of range (the field is named)"
            },
        },
    )
    async def change(package_id: uuid.UUID, body: ChangeRequest, caller: Caller) -> dict:
        made: list[uuid.UUID] = []

        async def action(uow: UnitOfWork) -> None:
            made.append(
                await handlers.request_change(
                    uow,
                    rules,
                    package_id,
                    hours_per_week=body.hours_per_week,
                    visits=body.visits,
                    needs=body.needs,
                    reason=body.reason,
                    effective_date=body.effective_date,
                    discussed_with_person=body.discussed_with_person,
                    changed_by=caller.actor,
                    reason_text=body.reason_text,
                )
            )

        answer = await act(package_id, action)
        return answer | {"change_id": str(made[-1]), "change_status": "pending"}

    @router.post(
        "/{package_id}/reviews",
        summary="Record a running package's review: no change, a change, technology-enabled care, or an ending",
        description="The outcome is recorded with who (the token's user) and when; a change (or equipment in "
        "place of some visits) is offered to the provider through the change flow, an ending goes through the "
        "ending flow, all in one transaction. The next review falls due a configured number of months after "
        "the review (decision record 0088).",
        status_code=201,
        responses={
            409: {"description": "The package is not running (field: status), or a change is pending (field: change)"},
            422: {
                "description": "A review date out of range, details missing or extra for the outcome, or the change's "
                "or ending's own fields (the field is named, e.g. change.hours_per_week, end.effective_date)"
            },
        },
    )
    async def review(package_id: uuid.UUID, body: ReviewRequest, caller: Caller) -> dict:
        made: list[uuid.UUID] = []
        change = body.change
        ending = body.end

        async def action(uow: UnitOfWork) -> None:
            made.append(
                await handlers.record_review(
                    uow,
                    rules,
                    package_id,
                    outcome=body.outcome,
                    reviewed_on=body.reviewed_on,
                    reviewed_by=caller.actor,
                    change=None
                    if change is None
                    else handlers.ReviewChange(
                        hours_per_week=change.hours_per_week,
                        visits=change.visits,
                        effective_date=change.effective_date,
                        needs=change.needs,
                        discussed_with_person=change.discussed_with_person,
                    ),
                    ending=None if ending is None else handlers.ReviewEnding(ending.reason, ending.effective_date),
                    technology=body.technology,
                    notes=body.notes,
                )
            )

        answer = await act(package_id, action, prefixes={"change": "change.", "end": "end."})
        row = await repo.get_package(service.pool, package_id)
        due = row["review_due_on"] if row is not None else None
        return answer | {"review_id": str(made[-1]), "next_review_due_on": due and due.isoformat()}

    @router.put(
        "/{package_id}/funding",
        summary="Record who pays for a package: dated periods, joint splits, a top-up",
        description="The whole record, replacing the last (decision record 0089): each period runs from its "
        "effective_from (a UK date) until the next one's; a joint period's shares add up to 100%.",
        responses={
            409: {"description": "The package is cancelled or has ended (field: status)"},
            422: {
                "description": "Shares not adding up to 100%, dates not rising, care left without a funder, "
                "or a first period further back than the backdating limit"
            },
        },
    )
    async def record_funding(package_id: uuid.UUID, body: FundingRequest, caller: Caller) -> dict:
        made: list[int] = []

        async def action(uow: UnitOfWork) -> None:
            made.append(
                await handlers.record_funding(
                    uow,
                    package_id,
                    periods=[
                        handlers.FundingPeriodInput(
                            p.effective_from,
                            p.funder,
                            None if p.shares is None else [(s.funder, s.percent) for s in p.shares],
                            [(c.call, c.funder) for c in p.calls],
                        )
                        for p in body.periods
                    ],
                    top_up=body.top_up_paid_by,
                    recorded_by=caller.actor,
                    date_limits=rules.date_limits,
                    reason_text=body.reason_text,
                )
            )

        answer = await act(package_id, action)
        return answer | {"funding_revision": made[-1]}

    @router.get(
        "/{package_id}/funding",
        summary="Who pays for a package, and the weekly cost split by funder on a day",
        description="The weekly cost (hours x the awarded rate) split by the period in force on ``on`` (a UK "
        "date, today by default): the band-rate part by the funders' shares, the part above the band rate to "
        "the top-up's payer or, for an approved above-rate exception, the council. Pounds; null before an award "
        "or for roles without the right to commercial data.",
    )
    async def read_funding(
        package_id: uuid.UUID,
        caller: Caller,
        on: Annotated[Day | None, Query()] = None,
    ) -> dict:
        """``{"revision", "periods", "top_up_paid_by", "in_force", "weekly_cost"}``; 404 for no package."""
        async with service.pool.acquire() as conn:
            row = await repo.get_package(conn, package_id)
            if row is None:
                raise ProblemError(404, f"no package {package_id}")
            funding = await repo.funding_of(conn, package_id)
        day = on or clock.uk_today()
        body: dict[str, Any] = {
            "package_id": str(package_id),
            "revision": 0,
            "periods": [],
            "top_up_paid_by": None,
            "recorded_by": None,
            "recorded_at": None,
            "request_funding": json.loads(row["spec"]).get("funding"),
            "on": day,
            "in_force": None,
            "weekly_cost": None,
        }
        if funding is None:
            return body
        periods = json.loads(funding["periods"])
        parsed = repo.periods_of(funding)
        current = domain.period_on(parsed, day)
        body |= {
            "revision": funding["revision"],
            "periods": periods,
            "top_up_paid_by": funding["top_up_paid_by"],
            "recorded_by": funding["recorded_by"],
            "recorded_at": funding["recorded_at"],
            "reason_text": funding["reason_text"],
            "in_force": None if current is None else periods[parsed.index(current)],
        }
        if current is not None and row["hourly_rate"] is not None and caller.roles & SEES_BID_PRICES:
            cost = domain.weekly_cost(
                hours_per_week=row["hours_per_week"],
                hourly_rate=row["hourly_rate"],
                band_rate=row["band_rate"],
                period=current,
                top_up_paid_by=funding["top_up_paid_by"],
                calls_per_day=json.loads(row["spec"])["visits"]["calls_per_day"],
            )
            body["weekly_cost"] = {
                "total": str(cost.total),
                "by_funder": {f: str(v) for f, v in cost.by_funder.items()},
                # Decision 0121: each funder's named calls and share, apart (pounds at the band rate).
                "parts": [
                    {"funder": w.funder, "basis": w.basis, "calls": list(w.calls), "pounds": str(amount)}
                    for w, amount in cost.parts
                ],
                "above_band": str(cost.above_band),
                "above_band_paid_by": cost.above_band_paid_by,
                "above_band_is": None
                if cost.above_band_paid_by is None
                else ("top_up" if funding["top_up_paid_by"] else "above_rate_exception"),
            }
        return body

    @router.post(
        "/{package_id}/exception/approve",
        summary="Approve paying above the band rate: the best such bid wins",
        description="Under the scheme of delegation (deploy/reference/delegation.yaml, decision records 0052 and "
        "0123): within the approver's limit the package is placed (``status`` placed); below it, where the scheme "
        "allows a second approver, or for a bid that takes two approvals, this is the first approval and the "
        "package stays ``awaiting_approval`` for a second approver, someone else, whose limit covers the bid. "
        "Never on a package the approver requested; nobody approves the same bid twice.",
        responses={
            403: {
                "description": "Beyond your role's limit with no first approval allowed, or you requested the package"
            },
            409: {"description": "No exception is awaiting a decision, or you already approved this bid"},
        },
    )
    async def approve(package_id: uuid.UUID, body: DecisionRequest, caller: Caller) -> dict:
        return await act(
            package_id,
            lambda uow: handlers.decide_exception(
                uow,
                rules,
                package_id,
                approve=True,
                decided_by=caller.actor,
                reason=body.reason,
                reason_text=body.reason_text,
                approver_roles=caller.roles,
            ),
        )

    @router.post(
        "/{package_id}/exception/reject",
        summary="Refuse to pay above the band rate: the package goes unplaced",
        responses={409: {"description": "No exception is awaiting a decision"}},
    )
    async def reject(package_id: uuid.UUID, body: DecisionRequest, caller: Caller) -> dict:
        return await act(
            package_id,
            lambda uow: handlers.decide_exception(
                uow,
                rules,
                package_id,
                approve=False,
                decided_by=caller.actor,
                reason=body.reason,
                reason_text=body.reason_text,
            ),
        )

    @router.get(
        "/{package_id}/person",
        summary="The person's details (the brokerage team only; each read is audited under the reader's name)",
    )
    async def read_person(package_id: uuid.UUID, caller: Caller) -> dict:
        async with service.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM persons WHERE package_id = $1", package_id)
            if row is None:
                raise ProblemError(404, f"no package {package_id}")
            # The read and its audit row commit together, as a provider's do (/internal/disclosures).
            await conn.execute(
                "INSERT INTO disclosures (package_id, reader, staff_user, fields) VALUES ($1, 'staff', $2, $3)",
                package_id,
                caller.actor,
                # .keys(): iterating an asyncpg Record yields its values, not its names.
                sorted(k for k in row.keys() if k != "package_id"),  # noqa: SIM118
            )
        return {k: (str(v) if isinstance(v, (uuid.UUID, dt.date)) else v) for k, v in dict(row).items()}

    @router.get("", summary="List packages, filtered and searched: a page, the total and counts per status")
    async def list_packages(
        caller: Caller,
        status: Annotated[
            str | None,
            Query(
                max_length=300,
                pattern=f"^({STATUSES})(,({STATUSES}))*$",
                description="One status or several, comma-separated (e.g. the work queue: "
                "unplaced,awaiting_approval,offered,requested,paused)",
            ),
        ] = None,
        zone: Annotated[str | None, Query(max_length=64)] = None,
        band: Band | None = None,
        urgency: Urgency | None = None,
        waiting_longer_than_hours: Annotated[float | None, Query(ge=0, le=24 * 366), DIGITS_0_TO_9] = None,
        q: Annotated[
            str | None,
            Query(
                min_length=3,
                max_length=100,
                description="Search: the start of a package id (4 or more hex digits), an NHS number, or part of "
                "the person's name (3 or more letters). NHS numbers and names only for the brokerage team; each "
                "package such a search finds is audited as a read of that field under the caller's name.",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000), WHOLE_0_TO_9] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000), WHOLE_0_TO_9] = 0,
        sort: Annotated[
            Literal["requested", "queue"],
            Query(
                description=(
                    "requested: oldest request first; queue: the unplaced queue and exceptions awaiting a "
                    "decision first, then most urgent (priority within urgency), then longest waiting"
                )
            ),
        ] = "requested",
        awaiting_second_approval: Annotated[
            bool,
            Query(
                description="Only above-rate bids with the first of two approvals, waiting for a second approver "
                "(decision records 0123, 0133)"
            ),
        ] = False,
    ) -> dict:
        """``{"packages": [...], "total": n, "counts": {status: n}, "awaiting_second_approval": n}``:
        ``limit`` packages from ``offset`` in ``sort`` order, each with ``awaiting_second_approval``
        (true: an above-rate bid has its first of two approvals and waits for a second approver,
        decision record 0133); ``total``, how many match; ``counts``, how many match each status
        with the other filters (so a work queue can show every status's count at once), and
        ``awaiting_second_approval`` how many of those await a second approval. With
        ``awaiting_second_approval=true``, only those. Raises 422 for an unknown zone or a search
        that is none of the three kinds, 403 for a person search by a role that may not read persons."""
        if zone is not None and zone not in rules.framework.zones:
            raise ProblemError(422, f"unknown zone {zone!r}", field="zone", code="unknown-zone")
        search = _search_of(q)
        if search is not None and search[0] != "package_id" and not (caller.roles & permissions.BROKERAGE_TEAM):
            raise ProblemError(
                403,
                "only the brokerage team may search by a person's name or NHS number",
                field="q",
                code="person-search-not-allowed",
            )
        order = (
            "requested_at"
            if sort == "requested"
            else (
                "CASE status WHEN 'unplaced' THEN 0 WHEN 'awaiting_approval' THEN 1 ELSE 2 END, "
                f"{repo.MOST_URGENT_FIRST}, requested_at"
            )
        )
        # The filters but the status: the counts per status use them all the same.
        where = """($1::text IS NULL OR zone = $1) AND ($2::text IS NULL OR band = $2)
                   AND ($3::text IS NULL OR urgency = $3)
                   AND ($4::float8 IS NULL OR (status IN ('requested', 'offered', 'unplaced', 'awaiting_approval')
                                               AND requested_at < now() - make_interval(secs => $4 * 3600)))
                   AND ($5::text IS NULL
                        OR ($5 = 'package_id' AND package_id::text LIKE $6 || '%')
                        OR ($5 = 'nhs_number' AND package_id IN (SELECT package_id FROM persons WHERE nhs_number = $6))
                        OR ($5 = 'full_name' AND package_id IN (SELECT package_id FROM persons
                                                                 WHERE full_name ILIKE '%' || $6 || '%')))"""
        args = (
            zone,
            band and band.value,
            urgency and urgency.value,
            waiting_longer_than_hours,
            *(search or (None, None)),
        )
        statuses = status.split(",") if status else None
        async with service.pool.acquire() as conn, conn.transaction():
            second = repo.AWAITING_SECOND_APPROVAL
            rows = await conn.fetch(
                f"""SELECT package_id, status, zone, band, urgency, hours_per_week, provider_id, priority, continuity,
                           requested_at, placed_at, unplaced_at, current_tier, window_closes_at, next_reoffer_at,
                           {second} AS awaiting_second_approval
                     FROM packages WHERE {where} AND ($7::text[] IS NULL OR status = ANY($7))
                      AND (NOT $10 OR {second})
                    ORDER BY {order} LIMIT $8 OFFSET $9""",
                *args,
                statuses,
                limit,
                offset,
                awaiting_second_approval,
            )
            seconds = await conn.fetchval(f"SELECT count(*) FROM packages WHERE {where} AND {second}", *args)
            counts = {
                r["status"]: r["n"]
                for r in await conn.fetch(
                    f"SELECT status, count(*) AS n FROM packages WHERE {where} GROUP BY status", *args
                )
            }
            if search is not None and search[0] != "package_id" and rows:
                # A search by a person's detail reads it: each package it found is audited (decision 0083).
                await conn.executemany(
                    "INSERT INTO disclosures (package_id, reader, staff_user, fields) VALUES ($1, 'staff', $2, $3)",
                    [(r["package_id"], caller.actor, [f"search:{search[0]}"]) for r in rows],
                )
        return {
            "packages": [
                {k: (str(v) if isinstance(v, (uuid.UUID, Decimal)) else v) for k, v in dict(r).items()} for r in rows
            ],
            "total": (
                (seconds if statuses is None or "awaiting_approval" in statuses else 0)
                if awaiting_second_approval
                else sum(n for st, n in counts.items() if statuses is None or st in statuses)
            ),
            "counts": counts,
            "awaiting_second_approval": seconds,
        }

    return router


def reviews_router(service: Service, rules: handlers.BrokerageRules) -> APIRouter:
    """The review queue (decision record 0088): running packages whose review is due or overdue."""
    router = APIRouter(prefix="/reviews", tags=["reviews"])

    @router.get("", summary="The review queue: running packages whose review is overdue or due soon")
    async def review_queue(
        caller: Caller,
        within_days: Annotated[
            int | None,
            Query(ge=0, le=400, description="Due within this many days of today (default: the due-soon setting)"),
            WHOLE_0_TO_9,
        ] = None,
        zone: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=1000), WHOLE_0_TO_9] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000), WHOLE_0_TO_9] = 0,
    ) -> dict:
        """``{"reviews": [...], "total": n, "counts": {"overdue": n, "due": n, "upcoming": n}, "today": date,
        "due_by": date}``: most overdue first; each with ``state`` (overdue: its due date has passed; due:
        within the due-soon setting's days; upcoming: later, within ``within_days``: ``domain.review_state``)
        and ``days_overdue`` (negative: days left); ``counts`` counts every item of the queue by its state.
        Dates are UK dates. 422 for an unknown zone."""
        if zone is not None and zone not in rules.framework.zones:
            raise ProblemError(422, f"unknown zone {zone!r}", field="zone")
        today = clock.uk_today()
        window = rules.reviews.due_soon_days if within_days is None else within_days
        due_by = today + dt.timedelta(days=window)
        rows, total = await repo.review_queue(service.pool, due_by=due_by, zone=zone, limit=limit, offset=offset)
        # The counts by the same states as the items (found by a new user: an upcoming review had been
        # counted as due).
        soon = today + dt.timedelta(days=rules.reviews.due_soon_days)
        counted = await service.pool.fetchrow(
            f"""SELECT count(*) FILTER (WHERE review_due_on < $1),
                       count(*) FILTER (WHERE review_due_on >= $1 AND review_due_on <= LEAST($3::date, $4::date))
                  FROM packages WHERE {repo.REVIEWABLE} AND ($2::text IS NULL OR zone = $2)""",
            today,
            zone,
            soon,
            due_by,
        )
        overdue, due = (int(counted[0]), int(counted[1])) if counted is not None else (0, 0)
        reviews = []
        for r in rows:
            item = {k: (str(v) if isinstance(v, (uuid.UUID, Decimal)) else v) for k, v in dict(r).items()}
            item["state"] = domain.review_state(r["review_due_on"], today, rules.reviews)
            item["days_overdue"] = (today - r["review_due_on"]).days
            reviews.append(item)
        return {
            "reviews": reviews,
            "total": total,
            "counts": {"overdue": overdue, "due": due, "upcoming": total - overdue - due},
            "today": today,
            "due_by": due_by,
        }

    return router


def reference_router(service: Service, rules: handlers.BrokerageRules) -> APIRouter:
    ref = APIRouter(prefix="/reference", tags=["reference"])

    @ref.get("/zones", summary="The framework's zones")
    async def zones() -> list[dict]:
        return [
            {
                "id": z.id,
                "name": z.name,
                "size": z.size,
                "places": list(z.places),
                "postcode_districts": list(z.postcode_districts),
                "adjacent": list(z.adjacent),
            }
            for z in rules.framework.zones.values()
        ]

    @ref.get("/providers", summary="The framework's providers as the brokerage knows them")
    async def providers() -> list[dict]:
        rows = await service.pool.fetch("SELECT provider_id, revision, profile FROM provider_view ORDER BY provider_id")
        return [{"revision": r["revision"], **json.loads(r["profile"])} for r in rows]

    @ref.get(
        "/hospitals",
        summary="Hospital discharge: the hospital and ward codes, and the in-house services' carer hours",
    )
    async def hospitals() -> dict:
        """deploy/reference/discharge.yaml (decision record 0097): each hospital's code, name and ward
        codes; each in-house service (in the fallback's order) with its capacity and the carer hours a
        week it covers today (a UK date)."""
        reference = rules.discharge_reference()
        async with service.pool.acquire() as conn, conn.transaction():
            committed = await repo.in_house_committed(conn, clock.uk_today())
        return {
            "version": reference.version,
            "hospitals": [
                {"code": h.code, "name": h.name, "wards": list(h.wards)} for h in reference.hospitals.values()
            ],
            "pathways": [
                {"pathway": p.pathway, "means": p.means, "route": p.route, "brokered": p.pathway == 1}
                for p in sorted(reference.pathways.values(), key=lambda p: p.pathway)
            ],
            "in_house_services": [
                {
                    "service": s.service,
                    "name": s.name,
                    "hours_per_week": str(s.hours_per_week),
                    "committed_hours_per_week": str(committed.get(s.service, Decimal(0))),
                }
                for s in reference.in_house
            ],
        }

    @ref.get("/rates", summary="The rate card in force today (the UK date)")
    async def rates() -> dict:
        card = rules.framework.rate_card_on(clock.uk_today())
        return {
            "version": card.version,
            "effective_from": card.effective_from,
            "rates": {b.value: str(r) for b, r in card.rates.items()},
        }

    @ref.get("/rate-cards", summary="Every rate card of the reference data: each band's hourly rate, by version")
    async def rate_cards() -> dict:
        """``{"in_force": version, "rate_cards": [{"version", "effective_from", "rates": {band: pounds per
        hour}}]}``, newest first, and which card is in force today (the UK date). Source: the framework's
        reference data (deploy/reference/framework.yaml ``rate_cards``, decision record 0009)."""
        framework = rules.framework
        cards = sorted(framework.rate_cards, key=lambda c: c.effective_from, reverse=True)
        try:
            in_force: str | None = framework.rate_card_on(clock.uk_today()).version
        except LookupError:  # every card starts in the future
            in_force = None
        return {
            "in_force": in_force,
            "rate_cards": [
                {
                    "version": c.version,
                    "effective_from": c.effective_from,
                    "rates": {b.value: str(r) for b, r in c.rates.items()},
                }
                for c in cards
            ],
        }

    @ref.get("/delegation", summary="The scheme of delegation in force: above-rate approval limits by role")
    async def delegation() -> dict:
        """Per cent above the band rate each role may approve (``null``: no limit; a role not named
        may approve nothing above the rate), as POST /packages/{id}/exception/approve applies it
        (deploy/reference/delegation.yaml, decision record 0052), and when a second approver is needed
        (``second_approver``, decision record 0123): for pages to show the limit first."""
        scheme = rules.delegation()
        always = scheme.two_approvals_above_percent
        return {
            "version": scheme.version,
            "limits_percent": {role: None if v is None else str(v) for role, v in scheme.limits_percent.items()},
            # A second approver (decision record 0123): a first approval below the limit; two beyond a percentage.
            "second_approver": {
                "first_approval_below_limit": scheme.first_approval_below_limit,
                "two_approvals_above_percent": None if always is None else str(always),
            },
        }

    return ref


PersonField = Literal["full_name", "address", "postcode", "phone", "email", "nhs_number", "date_of_birth", "care_notes"]
PERSON_FIELDS: tuple[PersonField, ...] = get_args(PersonField)


class DisclosureRequest(BaseModel):
    """From the providers service (its client-credentials token, ``service:providers``), which has
    authenticated the provider by its API credential and checked its placement: ``provider_id`` and
    ``credential_id`` are what that verified service asserts, and the brokerage checks the award on
    its own record again. Nobody else may call this (docs/guide/security.md)."""

    model_config = ConfigDict(extra="forbid")
    package_id: uuid.UUID
    provider_id: ProviderId = Field(min_length=1, max_length=64)
    credential_id: str = Field(
        pattern=r"^([0-9a-f]{16}|user:[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12})$",
        description="Who at the provider asked: its API credential's id (16 hex digits) or user:<staff user's id>",
    )
    fields: Distinct[PersonField] = Field(min_length=1, max_length=len(get_args(PersonField)))


def internal_router(service: Service) -> APIRouter:
    """Service-to-service endpoints (not for people): the providers service's own access token."""
    router = APIRouter(prefix="/internal", tags=["internal"])

    @router.post(
        "/disclosures",
        summary="Disclose a person's details to the provider the package is placed with, and audit it",
        responses={
            403: {"description": "The package is not placed with that provider"},
            404: {"description": "No such package"},
        },
    )
    async def disclose(body: DisclosureRequest) -> dict:
        # The brokerage checks the award on its own record too: it is the source of truth, and
        # the audit row and the read commit together (no disclosure without its record).
        async with service.pool.acquire() as conn, conn.transaction():
            package = await conn.fetchrow(
                "SELECT status, provider_id, ended_on FROM packages WHERE package_id = $1 FOR SHARE", body.package_id
            )
            if package is None:
                raise ProblemError(404, f"no package {body.package_id}")
            # A paused package's provider still holds it (it will care for the person again), and an
            # ended one's until the effective date (it cares for the person until the day before).
            today = clock.uk_today()
            holds = package["provider_id"] == body.provider_id and (
                package["status"] in ("placed", "started", "paused")
                or (package["status"] == "ended" and package["ended_on"] > today)
            )
            # So does a provider still paid for today's care by an agreement in force: one working its
            # notice after a hand-back, or carrying on until a hand-over (decision 0158; found by an
            # attack: the leaving provider was refused the details of a person it still visited).
            if not holds and not await repo.paid_for_care_on(conn, body.package_id, body.provider_id, today):
                raise ProblemError(403, "the package is not placed with this provider", code="not-placed-with-you")
            fields = sorted(set(body.fields))
            person = await fetch_one(  # written with the package: always there
                conn, f"SELECT {', '.join(fields)} FROM persons WHERE package_id = $1", body.package_id
            )
            await conn.execute(
                "INSERT INTO disclosures (package_id, provider_id, credential_id, fields) VALUES ($1, $2, $3, $4)",
                body.package_id,
                body.provider_id,
                body.credential_id,
                fields,
            )
        return {"package_id": str(body.package_id)} | {
            k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in dict(person).items()
        }

    return router


class SandboxPackageRequest(BaseModel):
    """A sandbox's test package (decision 0116), asked for by the providers service for the provider
    whose credential called ``POST /me/sandbox/offers``: the person is made up here."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    provider_id: ProviderId = Field(max_length=64, description="The provider it is offered to, alone")
    zone: ZoneId = Field(max_length=64, description="Zone id, e.g. lutterworth")
    band: Band
    needs: Distinct[CareNeed] = Field(min_length=1, max_length=len(CareNeed))
    visits: VisitPattern = Field(description="The hours per week are the visits' carer hours")
    urgency: Literal["community", "reablement_step_down"] = "community"
    start_in_days: StrictInt = Field(default=3, ge=0, le=60, description="The care starts this many UK days from today")


def sandbox_router(service: Service, rules: handlers.BrokerageRules) -> APIRouter:
    """The sandbox's own operation (decision 0116): answered only where ``HOMECARE_SANDBOX=true``."""
    router = APIRouter(prefix="/internal", tags=["internal"])

    @router.post(
        "/sandbox/packages",
        status_code=201,
        response_model=PackageCreated,
        summary="Sandbox only: request a made-up package offered to one provider alone",
        description="For the providers service's `POST /me/sandbox/offers`. The person is synthetic (an NHS "
        "number from the never-issued 999 range, a phone number from Ofcom's drama range, an example.org "
        "email); the package is offered to `provider_id` and to no one else. Outside a sandbox deployment "
        "the answer is a 404 (`sandbox-only`).",
        responses={
            404: {"description": "Not a sandbox deployment (code sandbox-only)"},
            422: {"description": "An unknown zone, or the hours of the visits out of range"},
        },
    )
    async def sandbox_package(body: SandboxPackageRequest) -> PackageCreated:
        if not rules.sandbox:
            raise ProblemError(404, "test packages are made in the sandbox only", code="sandbox-only")
        import random

        from services.simulator.synthetic import package_request  # made-up persons, seeded

        if body.zone not in rules.framework.zones:
            raise ProblemError(422, f"unknown zone {body.zone!r}", field="zone", code="unknown-zone")
        package_id = uuid.uuid4()
        made_up = package_request(random.Random(package_id.int), rules.framework, body.zone)
        try:
            request = PackageRequest.model_validate(
                made_up
                | {
                    "band": body.band,
                    "needs": body.needs,
                    "visits": body.visits.model_dump(),
                    "hours_per_week": body.visits.care_hours_per_week,
                    "urgency": body.urgency,
                    "start_date": (clock.uk_today() + dt.timedelta(days=body.start_in_days)).isoformat(),
                    "funding": "council",
                }
            )
        except ValueError as exc:  # the visits' hours out of the request's range
            raise ProblemError(422, f"not a package the brokerage takes: {exc}", field="visits") from None
        spec = PackageSpec.model_validate(request.model_dump(exclude={"person", "discharge"}))
        created = await run_in_unit_of_work(
            service.pool,
            lambda uow: handlers.request_package(
                uow,
                rules,
                spec=spec,
                person=request.person.model_dump(),
                requested_by=f"sandbox.{body.provider_id}",  # an actor id (no colon)
                package_id=package_id,
                sandbox_for=body.provider_id,
            ),
        )
        return PackageCreated(package_id=package_id, status=created.status, links={"self": f"/packages/{package_id}"})

    return router


def disclosures_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["packages"])

    @router.get(
        "/disclosures",
        summary="The disclosure log: who was shown which person's details, when (filtered, a page at a time)",
    )
    async def disclosure_log(
        package_id: Annotated[uuid.UUID | None, Query(description="One package's disclosures only")] = None,
        reader: Annotated[
            Literal["staff", "provider"] | None, Query(description="staff: brokerage staff; provider: a provider")
        ] = None,
        who: Annotated[
            str | None,
            Query(
                pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$",
                description="A staff member's username or a provider's id, exactly",
            ),
        ] = None,
        from_date: Annotated[Day | None, Query(alias="from", description="From this UK date (inclusive)")] = None,
        to_date: Annotated[Day | None, Query(alias="to", description="To this UK date (inclusive)")] = None,
        limit: Annotated[int, Query(ge=1, le=500), WHOLE_0_TO_9] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000), WHOLE_0_TO_9] = 0,
    ) -> dict:
        """``{"disclosures": [...], "total": n}``: newest first, ``limit`` rows from ``offset``; each row
        the reader (``staff`` with ``staff_user``, or ``provider`` with ``provider_id`` and
        ``credential_id``), the package, the fields read (``search:<field>`` for a person search that
        found the package) and ``disclosed_at`` (UTC). Dates are UK calendar days. Read-only: the log is
        the audit schema's, append-only (decision records 0016, 0073). 422 when ``from`` is after ``to``."""
        if from_date and to_date and from_date > to_date:
            raise ProblemError(422, "the from date is after the to date", field="from", code="invalid-date")
        start = clock.uk_day_bounds(from_date)[0] if from_date else None
        end = clock.uk_day_bounds(to_date)[1] if to_date else None
        where = """($1::uuid IS NULL OR package_id = $1) AND ($2::text IS NULL OR reader = $2)
                   AND ($3::text IS NULL OR staff_user = $3 OR provider_id = $3)
                   AND ($4::timestamptz IS NULL OR disclosed_at >= $4)
                   AND ($5::timestamptz IS NULL OR disclosed_at < $5)"""
        args = (package_id, reader, who, start, end)
        async with service.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT disclosure_id, package_id, reader, provider_id, credential_id, staff_user, fields, "
                f"disclosed_at FROM disclosures WHERE {where} "
                "ORDER BY disclosed_at DESC, disclosure_id DESC LIMIT $6 OFFSET $7",
                *args,
                limit,
                offset,
            )
            total = await conn.fetchval(f"SELECT count(*) FROM disclosures WHERE {where}", *args)
        return {
            "disclosures": [dict(r) | {"package_id": str(r["package_id"]), "fields": list(r["fields"])} for r in rows],
            "total": total,
        }

    @router.get(
        "/packages/{package_id}/disclosures",
        summary=(
            "Who was shown the person's details: the provider and credential, or the staff member; when; which fields"
        ),
    )
    async def disclosures(package_id: uuid.UUID) -> list[dict]:
        rows = await service.pool.fetch(
            "SELECT disclosure_id, reader, provider_id, credential_id, staff_user, fields, disclosed_at FROM "
            "disclosures "
            "WHERE package_id = $1 ORDER BY disclosure_id",
            package_id,
        )
        return [dict(r) | {"fields": list(r["fields"])} for r in rows]

    return router


# ---- the hand-off to finance (decision records 0109-0111) -------------------------------------------

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
ProviderFilter = Annotated[
    str | None, Query(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$", description="One provider's records only")
]


def _record_view(row: asyncpg.Record) -> dict[str, Any]:
    """A stored service agreement record as the API shows it (pounds as strings, UK dates)."""
    return {
        "record_id": str(row["record_id"]),
        "agreement_id": str(row["agreement_id"]),
        "version": row["version"],
        "supersedes": None if row["supersedes"] is None else str(row["supersedes"]),
        "reason": row["reason"],
        "status": row["status"],
        "package_id": str(row["package_id"]),
        "provider_id": row["provider_id"],
        "provider_name": row["provider_name"],
        "zone": row["zone"],
        "band": row["band"],
        "hourly_rate": str(row["hourly_rate"]),
        "band_rate": str(row["band_rate"]),
        "hours_per_week": str(row["hours_per_week"]),
        "weekly_cost": str(row["weekly_cost"]),
        "start_date": row["start_date"],
        "end_date": row["end_date"],
        "funding": json.loads(row["funding"]),
        "funding_revision": row["funding_revision"],
        "cost_centre": row["cost_centre"],
        "rate_card": row["rate_card"],
        "recorded_at": row["recorded_at"],
    }


def _csv(rows: list[dict[str, str]], columns: tuple[str, ...] | list[str]) -> bytes:
    """RFC 4180 CSV with a header row, UTF-8, CRLF line ends (what finance imports expect)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: safe_cell(v) for k, v in row.items()} for row in rows)
    return out.getvalue().encode()


def finance_router(service: Service, rules: handlers.BrokerageRules) -> APIRouter:
    """Service agreement records for the finance team: the records, the import file and the weekly
    commitment (docs/guide/finance.md). Package ids only: no person's details."""
    router = APIRouter(prefix="/service-agreements", tags=["finance"])

    @router.get(
        "", summary="Service agreement records in the order written, or newest first (corrections are new versions)"
    )
    async def list_records(
        provider_id: ProviderFilter = None,
        package_id: uuid.UUID | None = None,
        in_force_only: Annotated[
            bool, Query(description="Only each agreement's latest version (the one no record supersedes)")
        ] = False,
        limit: Annotated[int, Query(ge=1, le=1000), WHOLE_0_TO_9] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000), WHOLE_0_TO_9] = 0,
        newest_first: Annotated[bool, Query(description="The newest records first (default: oldest first)")] = False,
    ) -> dict:
        """``{"records": [...]}`` in the order written (``newest_first``: the reverse): each with its
        agreement id, version, the record it supersedes, the provider, the package id, rate (pounds per
        hour), carer hours per week, weekly cost (pounds), start and end (UK dates, inclusive), the
        funding split and the cost centre."""
        rows = await repo.agreement_records(
            service.pool,
            provider_id=provider_id,
            package_id=package_id,
            in_force_only=in_force_only,
            limit=limit,
            offset=offset,
            newest_first=newest_first,
        )
        return {"records": [_record_view(r) for r in rows]}

    @router.get(
        "/export",
        summary="The finance system's import file: the records written in a period, one row per payer line",
        response_class=Response,
        responses={
            200: {"content": {CSV_MEDIA_TYPE: {}}},
            422: {"description": "A bad parameter (named): dates out of order, a span over 366 days"},
        },
    )
    async def export(
        recorded_from: Annotated[
            Day | None,
            Query(
                description="First UK day of records written (default: 6 days before recorded_to)",
            ),
        ] = None,
        recorded_to: Annotated[
            Day | None,
            Query(
                description="Last UK day of records written (default: today)",
            ),
        ] = (None),
        provider_id: ProviderFilter = None,
    ) -> Response:
        """CSV in the layout of docs/guide/finance.md (columns :data:`domain.EXPORT_COLUMNS`): every record
        written from ``recorded_from`` to ``recorded_to`` (UK dates, inclusive), superseded ones too - the
        finance system applies each version over the one it supersedes. Dates dd/mm/yyyy; pounds with two
        decimals. 422 naming ``recorded_to`` (before ``recorded_from``, or more than 366 days after it),
        ``recorded_from``, or ``provider_id`` (not a provider id)."""
        last = recorded_to or clock.uk_today()
        first = recorded_from or last - dt.timedelta(days=6)
        refusal = domain.export_refusal(first, last)
        if refusal is not None:
            raise ProblemError(refusal.status, refusal.message, field=refusal.field)
        rows = await repo.agreement_records(
            service.pool,
            recorded_from=clock.uk_day_start(first),
            recorded_before=clock.uk_day_start(last + dt.timedelta(days=1)),
            provider_id=provider_id,
        )
        codes = rules.finance()
        lines = [
            line
            for r in rows
            for line in domain.export_rows(
                record_id=str(r["record_id"]),
                agreement_id=str(r["agreement_id"]),
                version=r["version"],
                supersedes=None if r["supersedes"] is None else str(r["supersedes"]),
                reason=r["reason"],
                package_id=str(r["package_id"]),
                terms=repo.terms_of(r),
                supplier_name=r["provider_name"] or "",
                service_type=codes.service_type,
                recorded_at=clock.to_uk(r["recorded_at"]).isoformat(timespec="seconds"),
            )
        ]
        name = f"service-agreements-{first.isoformat()}-{last.isoformat()}.csv"
        return Response(
            _csv(lines, domain.EXPORT_COLUMNS),
            media_type=CSV_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @router.get(
        "/commitments",
        summary="The weekly commitment by provider and funder, pounds per week",
        responses={
            200: {"content": {"application/json": {}, CSV_MEDIA_TYPE: {}}},
            422: {"description": "A week not named by its Monday, or an unknown format (named)"},
        },
    )
    async def commitments(
        week: Annotated[
            Day | None,
            Query(
                description="The week's Monday (a UK date; default: this week's)",
            ),
        ] = None,
        format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
    ) -> Any:
        """What the council is committed to pay in the week from Monday ``week`` (UK dates, Monday to
        Sunday), by provider and payer: each agreement in force (latest version, agreed) for the days of
        the week it covers - pounds per week x days / 7 - summed and rounded to the penny.
        ``{"week_commencing", "week_ending", "rows": [{provider_id, provider_name, payer, pounds}],
        "by_provider", "by_payer", "total"}``, or the rows as CSV. 422 naming ``week`` or ``format``."""
        monday = week or clock.uk_week_of(clock.uk_today())
        refusal = domain.week_refusal(monday)
        if refusal is not None:
            raise ProblemError(refusal.status, refusal.message, field=refusal.field)
        sunday = monday + dt.timedelta(days=6)
        lines = [
            {
                "provider_id": r["provider_id"],
                "provider_name": r["provider_name"] or "",
                "payer": r["payer"],
                "pounds": str(domain.commitment_pounds(r["pound_days"])),
            }
            for r in await repo.weekly_pound_days(service.pool, monday)
        ]
        if format == "csv":
            header = ("WeekCommencing", "SupplierRef", "SupplierName", "Funder", "WeeklyAmount")
            body = [
                dict(
                    zip(
                        header,
                        (domain.uk_date_text(monday), r["provider_id"], r["provider_name"], r["payer"], r["pounds"]),
                        strict=True,
                    )
                )
                for r in lines
            ]
            return Response(
                _csv(body, header),
                media_type=CSV_MEDIA_TYPE,
                headers={"Content-Disposition": f'attachment; filename="commitments-{monday.isoformat()}.csv"'},
            )
        by_provider: dict[str, Decimal] = {}
        by_payer: dict[str, Decimal] = {}
        for line in lines:
            v = Decimal(line["pounds"])
            by_provider[line["provider_id"]] = by_provider.get(line["provider_id"], Decimal(0)) + v
            by_payer[line["payer"]] = by_payer.get(line["payer"], Decimal(0)) + v
        return {
            "week_commencing": monday,
            "week_ending": sunday,
            "rows": lines,
            "by_provider": {p: str(v) for p, v in by_provider.items()},
            "by_payer": {p: str(v) for p, v in sorted(by_payer.items())},
            "total": str(sum(by_payer.values(), Decimal(0))),
        }

    return router
