"""Errors as RFC 9457 problem details (``application/problem+json``), the same in every API.

Every 4xx and 5xx a service sends has this body::

    {"type": "urn:homecare:problem:offer-closed",   # stable: what went wrong, for programs
     "title": "The offer's window has closed",       # the type's constant summary
     "status": 409,
     "detail": "the offer closed at 12 March 2026 14:00 (UK)",  # this occurrence, in words
     "code": "offer-closed",                         # the type's last part, for a switch statement
     "errors": [{"field": "rate", "pointer": "#/rate", "detail": "..."}],  # fields at fault, if any
     "error": "...", "fields": [{"field": "rate", "message": "..."}]}     # deprecated (v1), below

``code`` is one of :data:`TYPES` (docs/guide/problems.md lists them, a test holds the page to this
table). A program branches on ``code`` (or ``type``), never on ``detail``'s words.

``error`` and ``fields`` are the body every API sent before problem details; they stay, with the
same content, until the next major version of the contract (docs/guide/problems.md says for how
long), so an adapter written against them keeps working.

Decision: docs/decisions/0095-errors-as-problem-details.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:homecare:problem:"


@dataclass(frozen=True)
class ProblemType:
    code: str
    status: int
    title: str


_ALL = [
    # Generic: every API, one per status.
    ProblemType("bad-request", 400, "The request is malformed"),
    ProblemType("invalid-request", 422, "The request is not valid"),
    ProblemType("unauthenticated", 401, "A valid access token or provider credential is required"),
    ProblemType("forbidden", 403, "Not allowed for who you are"),
    ProblemType("not-found", 404, "No such resource"),
    ProblemType("method-not-allowed", 405, "The address does not take this method"),
    ProblemType("conflict", 409, "Not allowed in the current state"),
    ProblemType("too-large", 413, "The request body is too large"),
    ProblemType("unsupported-media-type", 415, "The request body's content type is not accepted"),
    ProblemType("unavailable", 503, "Temporarily unavailable: try again shortly"),
    ProblemType("internal-error", 500, "The service failed; the failure is logged"),
    # Specific: where a program needs to tell one refusal from another.
    ProblemType("idempotency-key-reused", 422, "The Idempotency-Key was used for a different request"),
    ProblemType("already-answered", 409, "The offer was already answered"),
    ProblemType("offer-closed", 409, "The offer's window has closed"),
    ProblemType("automatic-adapter", 409, "Your adapter answers offers automatically"),
    ProblemType("capacity-short", 409, "Not enough free capacity"),
    ProblemType("capacity-below-commitments", 409, "Capacity cannot go below what is committed"),
    ProblemType("change-request-pending", 409, "A change request is already awaiting a decision"),
    ProblemType("change-request-decided", 409, "The change request was already decided"),
    # Joining the framework (decision records 0113, 0114).
    ProblemType("outside-window", 422, "Received outside the framework's re-opening windows"),
    ProblemType("checklist-incomplete", 422, "A due-diligence checklist item is missing or failed"),
    ProblemType("application-decided", 409, "The application was already approved or refused"),
    ProblemType("provider-exists", 409, "The provider is already on the framework or applying"),
    ProblemType("status-not-allowed", 409, "The provider's status cannot change that way"),
    ProblemType("action-not-allowed", 409, "Not allowed in the package's current state"),
    ProblemType("invalid-date", 422, "A date is outside what the rules allow"),
    ProblemType("older-than-held", 409, "The record is older than the one held"),
    # A running package's actions (the brokerage): which rule a date or a change breaks.
    ProblemType("date-before-start", 422, "The date is before the care started"),
    ProblemType("date-before-request", 422, "The date is before the package was requested"),
    ProblemType("date-before-handover", 422, "The date is not after the last day paid to the provider before"),
    ProblemType("date-before-pause", 422, "The date is before the pause began"),
    ProblemType("hold-expired", 409, "The provider's hold on the paused package has run out: it ends"),
    ProblemType("date-in-future", 422, "The date is in the future: it is recorded when it happens"),
    ProblemType("date-too-far-back", 422, "The date is further back than the brokerage records"),
    ProblemType("date-too-far-ahead", 422, "The date is further ahead than the brokerage records"),
    ProblemType("hours-mismatch", 422, "The hours per week do not match the visit pattern"),
    ProblemType("change-changes-nothing", 422, "The change leaves the package as it is"),
    ProblemType("reduction-not-discussed", 422, "A reduction must be discussed with the person or family first"),
    ProblemType("not-delegated", 403, "Above your approval limit under the scheme of delegation"),
    ProblemType("already-approved", 409, "You already approved this bid: the second approval is someone else's"),
    ProblemType("not-placed-with-you", 403, "The package is not placed with you"),
    ProblemType("person-search-not-allowed", 403, "Only the brokerage team may search by a person"),
    ProblemType("not-in-permission-table", 403, "The operation is not in the permission table"),
    ProblemType("acting-for-not-allowed", 403, "Only the console's service account may act for someone"),
    ProblemType("no-webhook", 409, "No webhook URL is registered"),
    ProblemType("delivery-pending", 409, "The delivery is still being tried"),
    ProblemType("too-many-pending-tests", 409, "Too many test deliveries are still pending"),
    ProblemType("too-many-pending-redeliveries", 409, "Too many of your redeliveries are still being tried"),
    ProblemType("destination-refused", 422, "The webhook address is not an allowed destination"),
    ProblemType("unknown-zone", 422, "No such zone"),
    ProblemType("postcode-mismatch", 422, "The postcode does not belong to the zone or district"),
    ProblemType("internal-listener-only", 404, "Served on the internal listener only"),
    # The sandbox (decision 0116): its test offers are made there alone.
    ProblemType("sandbox-only", 404, "Served in the sandbox only"),
    # Safeguarding concerns (decision records 0106-0108).
    ProblemType("concern-closed", 409, "The concern is closed: its outcome was recorded"),
    ProblemType("concern-not-about-a-provider", 409, "Only a concern about a provider can pause its offers"),
    ProblemType("offers-already-paused", 409, "This concern already paused the provider's new offers"),
    # A provider's named staff users (decision 0126).
    ProblemType("not-a-provider-user", 403, "The signed-in person is not a user of the provider their account names"),
    # Decision 0165: the identity provider names a provider staff user's organisation.
    ProblemType("no-provider-claim", 403, "The signed-in person's account does not name the provider they work for"),
    ProblemType("not-a-provider-admin", 403, "Only the organisation's admin users manage its users"),
    ProblemType("not-your-contact", 403, "Your roles do not allow setting a contact of this kind"),
    ProblemType("user-exists", 409, "That username is already a user of this provider"),
    ProblemType("own-user", 409, "An admin user cannot remove themselves"),
]
TYPES: dict[str, ProblemType] = {t.code: t for t in _ALL}
GENERIC: dict[int, str] = {
    400: "bad-request",
    500: "internal-error",
    422: "invalid-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    503: "unavailable",
}


def type_of(status: int, code: str | None) -> ProblemType:
    """The problem type of a response: ``code``'s, or the generic one of ``status``. A code whose
    status differs from the response's is a programming error (``ValueError``), caught by the tests."""
    if code is None:
        return TYPES.get(GENERIC.get(status, ""), ProblemType("error", status, "The request failed"))
    found = TYPES.get(code)
    if found is None or found.status != status:
        raise ValueError(f"problem code {code!r} is not a {status} (services/runtime/problems.py TYPES)")
    return found


def body(status: int, detail: str, *, code: str | None = None, fields: list[dict[str, str]] | None = None) -> dict:
    """The problem details body. ``fields``: ``[{"field": "a.b", "detail": ...}]``, the fields at
    fault (a dotted path into the request body, a query parameter or a header)."""
    kind = type_of(status, code)
    out: dict[str, Any] = {
        "type": TYPE_PREFIX + kind.code,
        "title": kind.title,
        "status": status,
        "detail": detail,
        "code": kind.code,
    }
    if fields:
        out["errors"] = [
            {"field": f["field"], "pointer": "#/" + f["field"].replace(".", "/"), "detail": f["detail"]} for f in fields
        ]
    # Deprecated members of contract v1 (see the module's docstring).
    out["error"] = detail
    if fields:
        out["fields"] = [{"field": f["field"], "message": f["detail"]} for f in fields]
    return out


class FieldError(BaseModel):
    field: str = Field(description="The field at fault: a dotted path into the body, a query parameter or a header")
    pointer: str = Field(description="The same as a JSON Pointer fragment into the request body (RFC 6901)")
    detail: str = Field(description="What is wrong with it, in words")


class LegacyFieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An error (RFC 9457 problem details), sent as ``application/problem+json`` with every 4xx and
    5xx. Branch on ``code`` (or ``type``); show ``detail`` to people."""

    model_config = ConfigDict(title="Problem")

    type: str = Field(description="urn:homecare:problem:<code>; docs/guide/problems.md lists every type")
    title: str = Field(description="The type's constant summary")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="This occurrence, in words")
    code: str = Field(description="The type's stable code: one of " + ", ".join(sorted(TYPES)))
    errors: list[FieldError] | None = Field(None, description="The fields at fault, when the problem is with fields")
    error: str = Field(
        description="Deprecated (contract v1): the same as detail", json_schema_extra={"deprecated": True}
    )
    fields: list[LegacyFieldError] | None = Field(
        None, description="Deprecated (contract v1): the same as errors", json_schema_extra={"deprecated": True}
    )


def validation_message(error: Any) -> str:
    """One pydantic error's message (an item of ``ValidationError.errors()``) as people read it: a
    rule of ours raising ValueError reads as its own words, without pydantic's "Value error, "
    (found by a new user: "Value error, care cannot have started in the future")."""
    if error.get("type") == "too_long" and isinstance(error.get("input"), str):
        # A limit checked after a text type's own validators (FreeText | None with max_length): pydantic
        # says "Value should have at most 1000 items after validation" of a string (found by an attack).
        return f"at most {error['ctx']['max_length']} characters, not {len(error['input'])}"
    return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
