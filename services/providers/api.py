"""The providers service's HTTP API.

- ``/providers/...``: the framework's registry (read by the council's staff; changed by its
  administrators: adapters, credentials, status; a provider's offers and webhook deliveries);
- ``/change-requests/...``: the council's administrators approve or reject providers' zone/band changes;
- ``/me/...``: the provider API, each call made by one provider with its own credential and acting
  for that provider only (``Authorization: Bearer hcp_...``). Another provider's offer, package or
  person is a 404: it cannot even be told apart from one that does not exist.
"""

# No "from __future__ import annotations": FastAPI must resolve the local dependency alias `Me`.

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar, get_args

import asyncpg
import httpx
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator
from pydantic.json_schema import SkipJsonSchema

from schemas.adapters import BidRequest, DeclineRequest, OfferClosedNotice, OfferNotice
from schemas.events import PackageSpec, ProviderProfile, VisitPattern, ZoneId
from schemas.vocabulary import Band, CareNeed, ComplaintTheme, RiskReason
from services.providers import domain, handlers
from services.providers import repository as repo
from services.runtime import clock, idempotency, pagination, permissions, quality
from services.runtime.auth import Principal, principal_of
from services.runtime.db import fetch_one
from services.runtime.fields import (
    DIGITS_0_TO_9,
    WEBHOOK_URL_PATTERN,
    WHOLE_0_TO_9,
    Day,
    DisplayName,
    Distinct,
    FreeText,
    Moment,
)
from services.runtime.http import ProblemError, check_webhook_url
from services.runtime.logging import get_logger
from services.runtime.oidc_client import TokenError
from services.runtime.outbox import UnitOfWork, run_in_unit_of_work
from services.runtime.reference import load_joining
from services.runtime.service import Service

log = get_logger(__name__)

T = TypeVar("T")

# The provider API's contract version (docs/guide/api-changelog.md, decision 0102): MAJOR.MINOR.PATCH.
# A minor version only adds (operations, optional fields, response fields, problem codes); a major
# version would change or remove, and be served beside this one under /v2 until this one's sunset.
CONTRACT_VERSION = "1.6.0"
VERSION_HEADER = "Homecare-Contract-Version"


async def contract_version(response: Response) -> None:
    """Every provider API response names the contract version it follows."""
    response.headers[VERSION_HEADER] = CONTRACT_VERSION


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="providerCredential",
    description="A provider's API credential (hcp_...), issued by the council (the provider API, /me)",
)
PersonField = Literal["full_name", "address", "postcode", "phone", "email", "nhs_number", "date_of_birth", "care_notes"]
PERSON_FIELDS: tuple[PersonField, ...] = get_args(PersonField)
Caller = Annotated[Principal, Depends(principal_of)]  # a member of the council's staff (an access token)


# A provider named in a path: as long as any provider id can be (the registry's ids: ^[a-z0-9][a-z0-9-]{1,63}$).
ProviderIdPath = Annotated[str, Path(max_length=64, description="The provider's id")]
CredentialIdPath = Annotated[str, Path(max_length=64, description="The credential's id")]


class StatusChange(BaseModel):
    """A decision of the council's on a provider's framework membership."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    status: Literal["active", "suspended", "left"] = Field(
        description="active reinstates a suspended provider; left is final"
    )
    reason: FreeText = Field(min_length=1, max_length=500, description="Why: kept in the provider's status history")


def _plain(record: asyncpg.Record | Mapping[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in dict(record).items()}


@dataclass(frozen=True)
class ProviderCaller:
    """The provider making a provider-API call: with its organisation's API credential
    (``credential_id``), or as one of its named staff users (``user_id``, ``user_role``: decision 0126).

    ``acted_by`` is what the provider's records and the disclosure log keep: the credential's id, or
    ``user:<user_id>`` (an opaque id, never a name)."""

    provider_id: str
    credential_id: str | None
    user_id: uuid.UUID | None = None
    user_name: str | None = None
    user_role: str | None = None
    username: str | None = None

    @property
    def acted_by(self) -> str:
        return f"user:{self.user_id}" if self.user_id is not None else str(self.credential_id)


def authenticator(service: Service) -> Callable[..., Awaitable[ProviderCaller]]:
    async def current_provider(
        request: Request,
        auth: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ProviderCaller:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is not None:
            # A named user, verified by the app's token check (services/runtime/auth.py): the
            # identity provider asserts their organisation (decision 0165), and this service's
            # membership says they may answer for it - never anything the request body says.
            if principal.provider_id is None:
                raise ProblemError(
                    403,
                    "your account at the identity provider does not say which provider you work for "
                    f"(its {service.settings.oidc_provider_claim!r} claim): ask the council's administrators to set it",
                    code="no-provider-claim",
                )
            member = await repo.live_member(
                service.pool, domain.canonical_username(principal.actor), principal.provider_id
            )
            if member is None:
                raise ProblemError(
                    403,
                    f"you are not a user of {principal.provider_id!r} on the framework: ask its admin user to add you",
                    code="not-a-provider-user",
                )
            return ProviderCaller(
                member["provider_id"],
                None,
                user_id=member["user_id"],
                user_name=member["name"],
                user_role=member["role"],
                username=member["username"],
            )
        parsed = domain.parse_token(auth.credentials) if auth else None
        row = await repo.live_credential(service.pool, parsed[0]) if parsed else None
        if parsed is None or row is None or not domain.secret_matches(parsed[1], row["secret_sha256"]):
            raise ProblemError(401, "a valid provider credential is required: Authorization: Bearer hcp_...")
        await service.pool.execute(
            "UPDATE credentials SET last_used_at = now() WHERE credential_id = $1", row["credential_id"]
        )
        return ProviderCaller(row["provider_id"], row["credential_id"])

    return current_provider


async def known_provider(service: Service, provider_id: str) -> None:
    """A 404 problem unless the registry has ``provider_id``: a list about no provider is not an
    empty list (decision 0130)."""
    if not await service.pool.fetchval("SELECT true FROM providers WHERE provider_id = $1", provider_id):
        raise ProblemError(404, f"no provider {provider_id!r}")


async def in_unit_of_work(service: Service, command: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """Run a command in one transaction, turning refusals into 4xx answers."""
    try:
        return await run_in_unit_of_work(service.pool, command)
    except handlers.Refused as exc:
        raise ProblemError(exc.status, str(exc), code=exc.code, field=exc.field) from None
    except idempotency.KeyReused as exc:
        raise ProblemError(422, str(exc), field=idempotency.HEADER, code="idempotency-key-reused") from None
    except LookupError as exc:
        raise ProblemError(404, str(exc)) from None
    except ValueError as exc:
        raise ProblemError(422, str(exc)) from None


CallTimes = Annotated[
    Distinct[domain.CallSlot] | None,
    # At least one: an empty list covered no call and declined every offer, and the portal showed it as
    # "any" (nothing ticked) - found by an attack. Null is "any".
    Field(
        min_length=1,
        max_length=len(get_args(domain.CallSlot)),
        description="Daily call slots covered, each once, at least one (null: any)",
    ),
]


def _band_code(value: str) -> str:
    """A premium's key: a band of the vocabulary (schemas/vocabulary.py ``Band``), else a 422 naming it."""
    if value not in Band.__members__.values():
        raise ValueError(f"{value!r} is not a band: one of {', '.join(Band)}")
    return value


Premiums = dict[
    Annotated[str, AfterValidator(_band_code), Field(json_schema_extra={"enum": [b.value for b in Band]})],
    Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2), DIGITS_0_TO_9],
]


class AdapterRules(domain.AutomaticRules):
    """The adapter's rules as a request sends them: each bounded, each call slot once (what is
    stored is read with :class:`domain.AutomaticRules`, which keeps accepting what was stored before)."""

    webhook_url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=WEBHOOK_URL_PATTERN,
        description="Where offers are POSTed (https in production)",
    )
    call_times: CallTimes = None
    max_package_hours: Annotated[Decimal, Field(gt=0, le=168, max_digits=5, decimal_places=2), DIGITS_0_TO_9] = Decimal(
        42
    )
    premium_percent: Premiums = Field(default_factory=dict, description="Premium asked per band, percent")


class AdapterChoice(AdapterRules):
    model_config = ConfigDict(extra="forbid")
    rotate_secret: StrictBool = Field(
        default=False, description="Webhook: make a new signing secret (the old one stops working)"
    )


class AdapterPatch(BaseModel):
    """Adapter settings to change: only the fields sent change (a field not sent keeps its value;
    one sent as null goes back to its default). The constraints are the adapter's own
    (services/providers/domain.py ``AutomaticRules``)."""

    model_config = ConfigDict(extra="forbid")
    kind: domain.AdapterKind | None = None
    webhook_url: str | None = Field(default=None, max_length=2000, pattern=WEBHOOK_URL_PATTERN)
    call_times: CallTimes = None
    max_package_hours: Annotated[Decimal, Field(gt=0, le=168, max_digits=5, decimal_places=2), DIGITS_0_TO_9] | None = (
        None
    )
    max_calls_per_day: StrictInt | None = Field(default=None, ge=1, le=6)
    premium_percent: Premiums | None = None
    lead_days: StrictInt | None = Field(default=None, ge=0, le=28)
    covers_adjacent_zones: StrictBool | None = None
    rotate_secret: StrictBool = Field(
        default=False, description="Webhook: make a new signing secret (the old one stops at once)"
    )


class CredentialRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    label: DisplayName = Field(
        default="", max_length=100, description="What the credential is for, e.g. 'rostering system'"
    )
    replace: StrictBool = Field(default=False, description="Rotate: revoke the provider's other credentials")


class Decision(BaseModel):
    """Who decides is the access token's user, never a field of the body."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: FreeText = Field(default="", max_length=500)


def build_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/providers", tags=["registry"])

    @router.get("", summary="The framework's providers")
    async def list_providers() -> list[dict]:
        rows = await service.pool.fetch("SELECT * FROM providers ORDER BY provider_id")
        return [
            repo.profile_of(r).model_dump(mode="json") | {"revision": r["revision"], "held_hours": str(r["held_hours"])}
            for r in rows
        ]

    @router.get("/{provider_id}", summary="One provider's registry entry")
    async def read_provider(provider_id: ProviderIdPath) -> dict:
        row = await service.pool.fetchrow("SELECT * FROM providers WHERE provider_id = $1", provider_id)
        if row is None:
            raise ProblemError(404, f"no provider {provider_id!r}")
        return repo.profile_of(row).model_dump(mode="json") | {
            "revision": row["revision"],
            "held_hours": str(row["held_hours"]),
            "adapter": json.loads(row["adapter"])["kind"],
        }

    @router.get(
        "/{provider_id}/offers",
        summary="Offers a provider received, with its answers",
        description="Each bid's `hourly_rate` (pounds per hour) only for roles that see commercial data "
        "(services/runtime/permissions.py: SEES_BID_PRICES); null for the others (operations).",
    )
    async def provider_offers(
        provider_id: ProviderIdPath,
        caller: Caller,
        status: Annotated[str | None, Query(pattern="^(offered|bid|declined|won|lost|closed)$")] = None,
    ) -> list[dict]:
        await known_provider(service, provider_id)
        # Operations follows the work, never prices (found by an attack: every bid's rate was shown).
        prices = bool(caller.roles & permissions.SEES_BID_PRICES)
        rows = await service.pool.fetch(
            """SELECT package_id, offer_round, tier, status, hourly_rate, decline_reason, decline_text,
               window_closes_at,
                      received_at, answered_at, spec
                 FROM offers WHERE provider_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY received_at""",
            provider_id,
            status,
        )
        return [
            permissions.priced(_plain(r) | {"spec": json.loads(r["spec"]), "package_id": str(r["package_id"])}, prices)
            for r in rows
        ]

    @router.put(
        "/{provider_id}/adapter",
        summary="Replace the provider's adapter: automatic, webhook or portal (brokerage team)",
        description="Replaces every setting: a field not sent goes back to its default (PATCH changes only "
        "the fields sent).",
        responses={404: {"description": "No such provider"}},
    )
    async def choose_adapter(
        provider_id: ProviderIdPath, body: Annotated[AdapterChoice, Body(default_factory=AdapterChoice)]
    ) -> dict:
        adapter = domain.AutomaticRules.model_validate(body.model_dump(exclude={"rotate_secret"}))
        if adapter.webhook_url:
            await check_webhook_url(adapter.webhook_url, service.settings.outbound_policy())
        secret = await in_unit_of_work(
            service,
            lambda uow: handlers.set_adapter(
                uow, provider_id, adapter, new_secret=body.rotate_secret, box=service.secrets
            ),
        )
        # The signing secret is shown once, when made; only the service keeps it.
        return {"provider_id": provider_id, "adapter": adapter.model_dump(mode="json")} | (
            {"webhook_secret": secret} if secret else {}
        )

    @router.patch(
        "/{provider_id}/adapter",
        summary="Change some of the provider's adapter settings; those not sent are kept (brokerage team)",
        description="Merge semantics: only the fields in the body change (null: back to the default). "
        "`PUT` replaces the whole adapter instead. A webhook adapter needs a `webhook_url` (sent now or kept).",
        responses={
            404: {"description": "No such provider"},
            422: {"description": "A setting out of range, an address not allowed, or a webhook without a URL"},
        },
    )
    async def patch_adapter(
        provider_id: ProviderIdPath, body: Annotated[AdapterPatch, Body(default_factory=AdapterPatch)]
    ) -> dict:
        changes = body.model_dump(mode="json", exclude_unset=True, exclude={"rotate_secret"})
        if changes.get("webhook_url"):
            await check_webhook_url(changes["webhook_url"], service.settings.outbound_policy())
        _, secret = await in_unit_of_work(
            service,
            lambda uow: handlers.patch_adapter(
                uow, provider_id, changes, new_secret=body.rotate_secret, box=service.secrets
            ),
        )
        row = await fetch_one(service.pool, "SELECT * FROM providers WHERE provider_id = $1", provider_id)
        return {"provider_id": provider_id, "adapter": adapter_view(row).model_dump(mode="json")} | (
            {"webhook_secret": secret} if secret else {}
        )

    @router.post(
        "/{provider_id}/credentials",
        status_code=201,
        summary="Issue an API credential to the provider (brokerage team); the token is shown only here",
    )
    async def issue_credential(
        provider_id: ProviderIdPath, body: Annotated[CredentialRequest, Body(default_factory=CredentialRequest)]
    ) -> dict:
        return _plain(
            await in_unit_of_work(
                service, lambda uow: handlers.issue_credential(uow, provider_id, label=body.label, replace=body.replace)
            )
        )

    @router.get("/{provider_id}/credentials", summary="The provider's credentials (never the secrets)")
    async def list_credentials(provider_id: ProviderIdPath) -> list[dict]:
        await known_provider(service, provider_id)
        rows = await service.pool.fetch(
            """SELECT credential_id, provider_id, label, created_at, revoked_at, last_used_at FROM credentials
                WHERE provider_id = $1 ORDER BY created_at""",
            provider_id,
        )
        return [dict(r) for r in rows]

    @router.post(
        "/{provider_id}/credentials/{credential_id}/revoke",
        summary="Revoke one of the provider's credentials (brokerage team)",
    )
    async def revoke_credential(provider_id: ProviderIdPath, credential_id: CredentialIdPath) -> dict:
        revoked = await in_unit_of_work(
            service, lambda uow: repo.revoke_credentials(uow.conn, provider_id, credential_id)
        )
        if not revoked:
            raise ProblemError(404, f"no live credential {credential_id!r} of {provider_id!r}")
        return {"provider_id": provider_id, "revoked": revoked}

    @router.get(
        "/{provider_id}/deliveries",
        response_model=list[DeliveryView],
        summary="Webhook deliveries to the provider and their status, every attempt of each; newest first",
    )
    async def provider_deliveries(
        provider_id: ProviderIdPath, limit: Annotated[int, Query(ge=1, le=1000), WHOLE_0_TO_9] = 100
    ) -> list[DeliveryView]:
        await known_provider(service, provider_id)
        return await delivery_views(service.pool, await repo.deliveries_of(service.pool, provider_id, limit))

    @router.post(
        "/{provider_id}/status",
        summary="Suspend, reinstate, or record that a provider left the framework",
        description="A suspended or departed provider gets no more offers, and the brokerage re-brokers every "
        "package placed with it, most urgent first.",
        responses={404: {"description": "No such provider"}, 409: {"description": "Not a change the rules allow"}},
    )
    async def change_status(provider_id: ProviderIdPath, body: StatusChange, caller: Caller) -> dict:
        try:
            updated = await run_in_unit_of_work(
                service.pool,
                lambda uow: handlers.change_status(
                    uow, provider_id, status=body.status, reason=body.reason, decided_by=caller.actor
                ),
            )
        except LookupError as exc:
            raise ProblemError(404, str(exc)) from None
        except domain.StatusRefused as exc:
            raise ProblemError(409, str(exc), field="status", code="status-not-allowed") from None
        return {"provider_id": provider_id, "status": updated.profile.status, "revision": updated.revision}

    @router.get(
        "/{provider_id}/status-history",
        summary="The council's decisions on a provider's membership",
    )
    async def status_history(provider_id: ProviderIdPath) -> list[dict]:
        if not await service.pool.fetchval("SELECT true FROM providers WHERE provider_id = $1", provider_id):
            raise ProblemError(404, f"no provider {provider_id!r}")
        return [dict(r) for r in await repo.status_history(service.pool, provider_id)]

    return router


def change_requests_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/change-requests", tags=["registry"])

    @router.get("", summary="Providers' requests to change their zones or bands (brokerage team)")
    async def list_requests(status: Literal["pending", "approved", "rejected"] | None = None) -> list[dict]:
        rows = await service.pool.fetch(
            "SELECT * FROM change_requests WHERE ($1::text IS NULL OR status = $1) ORDER BY request_id", status
        )
        return [handlers.change_request_view(r) for r in rows]

    async def decide(request_id: int, body: Decision, approve: bool, caller: Principal) -> dict:
        return await in_unit_of_work(
            service,
            lambda uow: handlers.decide_coverage_change(
                uow, request_id, approve=approve, decided_by=caller.actor, reason=body.reason
            ),
        )

    @router.post("/{request_id}/approve", summary="Approve: the provider serves the requested zones and bands from now")
    async def approve(
        request_id: Annotated[int, Path(ge=1, le=2**62), WHOLE_0_TO_9],
        body: Annotated[Decision, Body(default_factory=Decision)],
        caller: Caller,
    ) -> dict:
        return await decide(request_id, body, True, caller)

    @router.post("/{request_id}/reject", summary="Reject the change; the provider keeps its zones and bands")
    async def reject(
        request_id: Annotated[int, Path(ge=1, le=2**62), WHOLE_0_TO_9],
        body: Annotated[Decision, Body(default_factory=Decision)],
        caller: Caller,
    ) -> dict:
        return await decide(request_id, body, False, caller)

    return router


# ---- safeguarding concerns (decision records 0106-0108) -----------------------------------------


class ConcernSubject(BaseModel):
    """What the concern is about: a package, a provider, or both (at least one)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    package_id: uuid.UUID | None = Field(default=None, description="The package (its people, its care)")
    provider_id: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9-]{1,63}$", description="The provider (its staff, its service)"
    )


class ConcernRequest(BaseModel):
    """A safeguarding concern. ``details`` and ``adult_at_risk`` are read by the safeguarding team only;
    they never leave the providers service (no event, notification or log carries them)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    subject: ConcernSubject = Field(description="What the concern is about: package_id, provider_id or both")
    category: domain.ConcernCategory = Field(description="The Care Act's category of abuse or neglect")
    details: FreeText = Field(min_length=1, max_length=5000, description="What happened or was seen, in your words")
    adult_at_risk: DisplayName | None = Field(default=None, max_length=200, description="Who may be at risk, if known")
    immediate_risk: StrictBool = Field(
        default=False, description="Someone may be at risk now: the queue shows it first"
    )


class ConcernRaised(BaseModel):
    concern_id: uuid.UUID
    reference: str = Field(description="What to quote to the safeguarding team, e.g. SG-000042")
    raised_at: dt.datetime


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: domain.OfferPauseReason = Field(description="Why new offers are paused pending the enquiry (a code)")


class OutcomeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: domain.ConcernOutcome = Field(description="How the concern ended; lifts its pause of new offers")


async def _raise(service: Service, body: ConcernRequest, **raiser: Any) -> dict[str, Any]:
    return await in_unit_of_work(
        service,
        lambda uow: handlers.raise_concern(
            uow,
            package_id=body.subject.package_id,
            provider_id=body.subject.provider_id,
            category=body.category,
            details=body.details,
            adult_at_risk=body.adult_at_risk,
            immediate_risk=body.immediate_risk,
            **raiser,
        ),
    )


def concerns_router(service: Service) -> APIRouter:
    """``/concerns``: raised by the brokerage team and operations; the queue, each concern, the pause of
    a provider's new offers and the outcome for the safeguarding team alone (the permission table)."""
    router = APIRouter(prefix="/concerns", tags=["safeguarding"])
    refused: dict[int | str, dict[str, Any]] = {
        422: {
            "description": "No subject (field subject), an unknown provider or package (subject.provider_id, "
            "subject.package_id), or a code not in the vocabulary"
        }
    }

    @router.post(
        "",
        status_code=201,
        response_model=ConcernRaised,
        responses=refused,
        summary="Raise a safeguarding concern about a package or a provider (it goes to the safeguarding queue)",
        description="Only the safeguarding team reads it back; the answer is its reference.",
    )
    async def raise_concern(body: ConcernRequest, caller: Caller) -> dict:
        role = next((r for r in sorted(caller.roles) if r in permissions.STAFF_ROLES), None)
        return await _raise(service, body, raised_by=caller.actor, raised_by_kind="staff", raised_by_role=role)

    @router.get("", summary="The safeguarding queue: open concerns first (immediate risk, then oldest); no words")
    async def concern_queue(
        status: Literal["open", "closed", "all"] = "open",
        limit: Annotated[int, Query(ge=1, le=1000), WHOLE_0_TO_9] = 200,
    ) -> dict:
        rows = await repo.concern_queue(service.pool, None if status == "all" else status, limit)
        open_count = await service.pool.fetchval("SELECT count(*) FROM concerns WHERE status = 'open'")
        return {"concerns": [handlers.concern_summary(r) for r in rows], "open": open_count}

    @router.get(
        "/{concern_id}",
        responses={404: {"description": "No such concern"}},
        summary="One concern with its words, decisions and who read it; every read is audited",
    )
    async def read_concern(concern_id: uuid.UUID, caller: Caller) -> dict:
        role = next((r for r in sorted(caller.roles) if r in permissions.STAFF_ROLES), "unknown")
        async with service.pool.acquire() as conn, conn.transaction():
            found = await repo.read_concern_audited(conn, concern_id, caller.actor, role)
        if found is None:
            raise ProblemError(404, f"no concern {concern_id}")
        row, decisions, reads, held_by = found
        return (
            handlers.concern_summary(row)
            | {"details": row["details"], "adult_at_risk": row["adult_at_risk"], "package_held_by": held_by}
            | {"decisions": [dict(d) for d in decisions], "reads": [dict(r) for r in reads]}
        )

    decision_errors: dict[int | str, dict[str, Any]] = {
        404: {"description": "No such concern"},
        409: {"description": "The concern is closed, is not about a provider, or already paused its offers"},
    }

    @router.post(
        "/{concern_id}/pause",
        responses=decision_errors,
        summary="Pause new offers to the concern's provider pending the enquiry (safeguarding team)",
        description="The brokerage offers the provider no new package until the outcome; its packages already "
        "placed stay with it. Who decided is the access token's user.",
    )
    async def pause(concern_id: uuid.UUID, body: PauseRequest, caller: Caller) -> dict:
        return await in_unit_of_work(
            service, lambda uow: handlers.pause_offers(uow, concern_id, reason=body.reason, decided_by=caller.actor)
        )

    @router.post(
        "/{concern_id}/outcome",
        responses=decision_errors,
        summary="Record the concern's outcome: it closes, and its pause of new offers lifts",
    )
    async def outcome(concern_id: uuid.UUID, body: OutcomeRequest, caller: Caller) -> dict:
        return await in_unit_of_work(
            service,
            lambda uow: handlers.record_concern_outcome(uow, concern_id, outcome=body.outcome, decided_by=caller.actor),
        )

    return router


# ---- joining the framework: applications and due diligence (decision records 0112-0114) ------

CqcRating = Literal["outstanding", "good", "requires_improvement", "inadequate", "not_yet_rated"]
Reference = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 /._:#-]{0,119}$")]


class ApplicationRequest(BaseModel):
    """An application to join the framework, as received through the council's tender portal."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    provider_id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{1,63}$", description="The id it will have in the registry, e.g. 'oakfield-care'"
    )
    name: DisplayName = Field(min_length=1, max_length=200, description="The provider's trading name")
    zones: Distinct[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]] = Field(
        min_length=1,
        max_length=20,
        description="Zones of the framework it will serve, each once (GET /reference/zones)",
    )
    bands: Distinct[Band] = Field(min_length=1, max_length=len(Band), description="Pricing bands it accepts, each once")
    skills: Distinct[CareNeed] = Field(
        min_length=1, max_length=len(CareNeed), description="Care needs it can meet, each once"
    )
    double_handed: StrictBool = Field(default=False, description="Staffs calls that need two carers")
    weekly_capacity_hours: Annotated[
        Decimal, Field(gt=0, le=Decimal("99999.99"), max_digits=7, decimal_places=2), DIGITS_0_TO_9
    ] = Field(description="Carer hours per week it offers")
    cqc_location_id: str = Field(pattern=r"^1-[0-9]{6,12}$", description="The CQC location id, e.g. 1-123456789")
    cqc_rating: CqcRating = Field(default="not_yet_rated", description="Its CQC rating now")
    adapter: AdapterRules = Field(
        default_factory=AdapterRules,
        description="How it will answer offers: automatic (with its rules), webhook (webhook_url) or portal",
    )
    tender_reference: Reference = Field(description="The tender portal's reference of the application")
    received_on: Day = Field(description="The tender portal's receipt date (UK): in a re-opening window")


class CheckRequest(BaseModel):
    """One due-diligence check; the reviewer is the access token's user."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    item: str = Field(
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="An item of the checklist (GET /applications/terms)",
    )
    outcome: Literal["passed", "failed"]
    evidence_reference: Reference = Field(
        description="Where the evidence is kept: a document or tender-portal reference (not the evidence itself)"
    )
    reviewed_on: Day | None = Field(default=None, description="UK date of the review (default: today)")
    note: FreeText | None = Field(default=None, max_length=500, description="Kept with the check; never on an event")


class ApprovalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    note: FreeText | None = Field(default=None, max_length=500)


class RefusalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: domain.RefusalReason = Field(description="Why, as a code")
    note: FreeText | None = Field(default=None, max_length=500, description="The team's words; never on an event")


def applications_router(service: Service) -> APIRouter:
    """The contracts and quality team's applications to join the framework (decision record 0112)."""
    router = APIRouter(prefix="/applications", tags=["joining"])

    async def command(run: Callable[[UnitOfWork], Awaitable[dict]]) -> dict:
        try:
            return await run_in_unit_of_work(service.pool, run)
        except domain.JoiningRefused as exc:
            raise ProblemError(exc.status, str(exc), code=exc.code, field=exc.field) from None
        except LookupError as exc:
            raise ProblemError(404, str(exc)) from None

    not_found: dict[int | str, dict[str, Any]] = {404: {"description": "No such application"}}
    decided: dict[int | str, dict[str, Any]] = {409: {"description": "The application was already decided"}}

    @router.get("/terms", summary="The re-opening windows and the due-diligence checklist (joining.yaml)")
    async def terms() -> dict:
        """``windows``: each re-opening window (UK dates, both included) and whether it is open today;
        ``checklist``: the items an approval needs, in order; ``refusal_reasons``: the codes."""
        joining = load_joining()
        today = clock.uk_today()
        return {
            "version": joining.version,
            "windows": [
                {
                    "id": w.id,
                    "name": w.name,
                    "opens_on": w.opens_on,
                    "closes_on": w.closes_on,
                    "open": w.contains(today),
                }
                for w in joining.windows
            ],
            "checklist": [{"item": i.id, "title": i.title, "evidence": i.evidence} for i in joining.checklist],
            "refusal_reasons": [r.value for r in domain.RefusalReason],
        }

    @router.post(
        "",
        status_code=201,
        summary="Record an application received through the tender portal (contracts and quality team)",
        responses={
            409: {"description": "The provider is on the framework or applying, or the tender reference is recorded"},
            422: {"description": "A field is not valid: an unknown zone or band, received outside every window"},
        },
    )
    async def record(body: ApplicationRequest, caller: Caller) -> dict:
        """Returns the application with its checklist (every item missing). Errors name the field:
        ``zones.N`` (unknown-zone), ``bands.N``, ``received_on`` (outside-window, invalid-date),
        ``adapter.webhook_url`` (destination-refused), ``provider_id``/``tender_reference`` (409)."""
        if body.adapter.kind == "webhook" and not body.adapter.webhook_url:
            raise ProblemError(422, "a webhook adapter needs webhook_url", field="adapter.webhook_url")
        if body.adapter.webhook_url:
            await check_webhook_url(
                body.adapter.webhook_url, service.settings.outbound_policy(), field="adapter.webhook_url"
            )
        fields = body.model_dump(mode="python") | {
            "bands": [b.value for b in body.bands],
            "skills": [s.value for s in body.skills],
            "adapter": body.adapter.model_dump(mode="json"),
        }
        return await command(lambda uow: handlers.record_application(uow, fields, recorded_by=caller.actor))

    @router.get("", summary="Applications to join the framework, newest received first")
    async def list_applications(
        status: Literal["received", "approved", "refused"] | None = None,
        limit: Annotated[int, Query(ge=1, le=1000), WHOLE_0_TO_9] = 200,
    ) -> list[dict]:
        return [
            await handlers.application_view(service.pool, r)
            for r in await repo.applications(service.pool, status, limit)
        ]

    @router.get("/{application_id}", summary="An application, its checklist and every check", responses=not_found)
    async def read_application(application_id: uuid.UUID) -> dict:
        row = await repo.application(service.pool, application_id)
        if row is None:
            raise ProblemError(404, f"no application {application_id}")
        return await handlers.application_view(service.pool, row)

    @router.post(
        "/{application_id}/checks",
        status_code=201,
        summary="Record a due-diligence check: an item passed or failed, with its evidence reference",
        responses=not_found | decided | {422: {"description": "Unknown item, or reviewed_on out of range"}},
    )
    async def record_check(application_id: uuid.UUID, body: CheckRequest, caller: Caller) -> dict:
        """The reviewer is the token's user; the latest check of an item counts. Returns the application."""
        return await command(
            lambda uow: handlers.record_check(
                uow,
                application_id,
                item=body.item,
                outcome=body.outcome,
                evidence_reference=body.evidence_reference,
                reviewed_on=body.reviewed_on,
                note=body.note,
                reviewed_by=caller.actor,
            )
        )

    @router.post(
        "/{application_id}/approve",
        summary="Approve: the provider joins the framework, active with its adapter",
        description="Every checklist item's latest check must be passed, else 422 naming the item as the field "
        "`checklist.<item>` (code checklist-incomplete). The provider joins the registry and ProviderUpdated goes "
        "out: the brokerage offers to it from then on. Issue its API credential with "
        "POST /providers/{provider_id}/credentials.",
        responses=not_found
        | {
            409: {"description": "Already decided, or the provider id is on the framework"},
            422: {"description": "A checklist item is missing or failed (the field names it)"},
        },
    )
    async def approve(
        application_id: uuid.UUID,
        body: Annotated[ApprovalRequest, Body(default_factory=ApprovalRequest)],
        caller: Caller,
    ) -> dict:
        return await command(
            lambda uow: handlers.approve_application(
                uow, application_id, decided_by=caller.actor, note=body.note, box=service.secrets
            )
        )

    @router.post(
        "/{application_id}/refuse",
        summary="Refuse the application with a reason code",
        responses=not_found | decided,
    )
    async def refuse(application_id: uuid.UUID, body: RefusalRequest, caller: Caller) -> dict:
        return await command(
            lambda uow: handlers.refuse_application(
                uow, application_id, reason=body.reason.value, decided_by=caller.actor, note=body.note
            )
        )

    return router


# ---- the provider API: /me ---------------------------------------------------------------


class ProfileChange(BaseModel):
    """What a provider changes of its own profile: only the fields sent change. ``call_times`` and
    ``max_calls_per_day`` sent as null go back to their defaults (any call time; 4 calls a day), as
    the adapter's own settings do; the capacity has no default (null: 422)."""

    model_config = ConfigDict(extra="forbid")
    weekly_capacity_hours: (
        Annotated[Decimal, Field(ge=0, le=Decimal("99999.99"), max_digits=7, decimal_places=2), DIGITS_0_TO_9]
        | SkipJsonSchema[None]
    ) = Field(default=None, description="Carer hours per week")
    call_times: CallTimes = Field(default=None, description="The daily call slots you cover; null: any")
    max_calls_per_day: StrictInt | None = Field(default=None, ge=1, le=6, description="null: the default, 4")

    @field_validator("weekly_capacity_hours", mode="before")
    @classmethod
    def _capacity_sent_is_a_number(cls, value: object) -> object:
        # Called only for a value sent: a capacity sent as null had been read as "no change".
        if value is None:
            raise ValueError("a number of carer hours per week: a capacity has no default")
        return value

    def rules_changes(self) -> dict[str, Any]:
        """The adapter's settings sent, by name (null: back to the default)."""
        return {k: getattr(self, k) for k in ("call_times", "max_calls_per_day") if k in self.model_fields_set}


class CoverageChange(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    zones: Distinct[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")]] = Field(
        min_length=1, max_length=20, description="The whole new list of zones, each once"
    )
    bands: Distinct[Band] = Field(min_length=1, max_length=len(Band), description="The whole new list, each once")
    reason: FreeText = Field(default="", max_length=500)


class AnswerAccepted(BaseModel):
    package_id: uuid.UUID
    offer_round: int
    status: Literal["bid", "declined"]
    answered_at: dt.datetime


class AdapterView(BaseModel):
    """A provider's adapter settings as shown to it and to the council (never a secret)."""

    kind: domain.AdapterKind = Field(
        description="automatic: the service answers by these rules; webhook: offers "
        "are POSTed to webhook_url; portal: staff answer in the provider API"
    )
    webhook_url: str | None = Field(description="Where offers and notices are POSTed (webhook adapters)")
    call_times: list[domain.CallSlot] | None = Field(description="The daily call slots covered (null: any)")
    max_calls_per_day: int = Field(
        description="Calls a day it takes: its own limit, and no more than the call slots it covers"
    )
    max_calls_per_day_setting: int = Field(
        description="Its own limit of calls a day, as set (max_calls_per_day is the lower of it and the call slots)"
    )
    max_package_hours: Decimal = Field(description="Automatic: the largest package it bids for, carer hours per week")
    premium_percent: dict[str, Decimal] = Field(
        description="Automatic: per band, the percentage above the band rate it bids"
    )
    lead_days: int = Field(description="Automatic: days' notice it needs before a start")
    covers_adjacent_zones: bool = Field(description="Automatic: takes work just outside its zones when asked")
    signing_secret_set: bool = Field(description="Whether a webhook signing secret exists (it is never shown again)")
    previous_secret_signs_until: dt.datetime | None = Field(
        description="During a rotation's overlap: until when the previous secret signs too (UTC); else null"
    )


def adapter_view(row: asyncpg.Record) -> AdapterView:
    rules = repo.rules_of(row)
    until = row["previous_secret_expires_at"]
    return AdapterView.model_validate(
        rules.model_dump()
        | {
            "max_calls_per_day": domain.max_calls(rules),
            "max_calls_per_day_setting": rules.max_calls_per_day,
            "signing_secret_set": bool(row["webhook_secret"]),
            "previous_secret_signs_until": until if until and until > dt.datetime.now(dt.UTC) else None,
        }
    )


class SignedInUser(BaseModel):
    """The named staff user making a provider-API call (decision 0126)."""

    user_id: uuid.UUID = Field(description="Opaque; what the provider's records keep as who acted")
    username: str = Field(description="Their username at the identity provider (preferred_username)")
    name: str
    role: domain.StaffUserRole = Field(description="admin users also add and remove the organisation's users")


class MeView(ProviderProfile):
    """A provider's own registry entry: its profile (as ProviderUpdated publishes it; capacity in
    carer hours per week), its revision, the hours held for outstanding bids, and its adapter."""

    held_hours: Decimal = Field(
        description="Carer hours per week held for outstanding bids, and for increases you accepted that the "
        "brokerage has not applied yet"
    )
    revision: int = Field(description="Bumped on every change of the registry entry")
    adapter: AdapterView
    user: SignedInUser | None = Field(
        default=None, description="The named staff user calling (since 1.2.0); null for the API credential"
    )
    # Never shown to the provider (decision record 0107): neither in the answer nor in the schema.
    offers_paused: SkipJsonSchema[bool] = Field(default=False, exclude=True)


class DeliveryAttempt(BaseModel):
    """One attempt of a delivery: when, how long, and what came back (never the receiver's body)."""

    attempt: int = Field(ge=1, description="1 for the first attempt")
    attempted_at: dt.datetime
    duration_ms: int = Field(description="Milliseconds from sending to the answer or the error")
    status_code: int | None = Field(description="The receiver's HTTP status; null when none came (an error)")
    error: str | None = Field(description="e.g. 'HTTP 500', 'ConnectTimeout: ...'; null when delivered")
    signed_with: int = Field(description="Signatures in the header: 2 during a secret rotation's overlap")


class DeliveryView(BaseModel):
    """A webhook delivery to the provider's system and every attempt made of it."""

    delivery_id: uuid.UUID = Field(description="Homecare-Delivery-Id; the same on every retry of this delivery")
    kind: Literal["offer", "change", "offer_closed", "test"]
    package_id: uuid.UUID | None = Field(description="null for a test delivery")
    offer_round: int | None
    change_id: uuid.UUID | None
    redelivery_of: uuid.UUID | None = Field(description="A redelivery: the delivery it sends again")
    url: str
    status: Literal["pending", "delivered", "failed", "withdrawn"]
    attempts: int = Field(description="How many attempts were made (each is in history)")
    last_attempt_at: dt.datetime | None
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: dt.datetime | None = Field(description="While pending: when it is tried next")
    give_up_at: dt.datetime = Field(description="No attempt after this (an offer's window_closes_at)")
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    history: list[DeliveryAttempt] = Field(description="Every attempt, oldest first")


async def delivery_views(conn: asyncpg.Pool, rows: list[asyncpg.Record]) -> list[DeliveryView]:
    history = await repo.attempts_of(conn, [r["delivery_id"] for r in rows])
    return [
        DeliveryView.model_validate(
            {k: v for k, v in dict(r).items() if k != "body"}
            | {
                "next_attempt_at": r["next_attempt_at"] if r["status"] == "pending" else None,
                "history": history.get(r["delivery_id"], []),
            }
        )
        for r in rows
    ]


class ChangeRequestView(BaseModel):
    """A provider's request to serve other zones or bands, and the council's decision."""

    request_id: int
    provider_id: str
    zones: list[str] = Field(description="The zones asked for (the whole new list)")
    bands: list[str] = Field(description="The bands asked for (the whole new list)")
    reason: str
    status: Literal["pending", "approved", "rejected"]
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by: str | None = Field(description="The council's member of staff who decided")
    decision_reason: str | None


class PackageChangeView(BaseModel):
    """A change to a package the provider holds (decision 0082); hours are carer hours per week."""

    change_id: uuid.UUID
    package_id: uuid.UUID
    package: PackageSpec = Field(description="The package after the change")
    previous_hours_per_week: Decimal
    hours_per_week: Decimal
    effective_date: dt.date = Field(description="The first day of the new pattern (UK date)")
    window_closes_at: dt.datetime
    status: Literal["offered", "accepted", "declined", "applied", "closed"]
    answer_with: dict[str, str] = Field(description="Where to answer: the accept and decline endpoints")


class PlacementView(BaseModel):
    """A package placed with the provider (one per award; ``ended_at`` null while it is live)."""

    package_id: uuid.UUID
    offer_round: int
    hours_per_week: Decimal = Field(description="Carer hours per week")
    hourly_rate: Decimal = Field(description="Pounds per hour")
    start_date: dt.date
    placed_at: dt.datetime
    ended_at: dt.datetime | None
    end_reason: str | None = Field(description="cancelled, handed_back, reopened, replaced or ended")
    package: PackageSpec | None = Field(description="The package as offered")
    person: str = Field(description="Where the person's details are (the live placement's provider only)")


class ChangeAnswered(BaseModel):
    change_id: uuid.UUID
    package_id: uuid.UUID
    status: Literal["accepted", "declined"]
    answered_at: dt.datetime


class PersonView(BaseModel):
    """The person's details, for the provider the package is placed with: the fields asked for
    (``fields``; all by default), each null when not recorded. Every read is audited."""

    package_id: uuid.UUID
    full_name: str | None = None
    address: str | None = None
    postcode: str | None = None
    phone: str | None = None
    email: str | None = None
    nhs_number: str | None = None
    date_of_birth: dt.date | None = None
    care_notes: str | None = None


class WebhookRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    url: str = Field(
        max_length=2000,
        pattern=WEBHOOK_URL_PATTERN,
        description="Your receiver: https, on a public address (checked now and at every delivery)",
    )


class WebhookRegistered(BaseModel):
    adapter: AdapterView
    receives_offers: bool = Field(description="Whether offers are POSTed to it now (a webhook adapter)")
    signing_secret: str | None = Field(
        default=None, description="Made at the first registration: shown only here, once; keep it safe"
    )


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_hours: StrictInt = Field(
        default=24,
        ge=0,
        le=168,
        description="How long the previous secret keeps signing too (0: it stops now; at most a week)",
    )


class SecretRotated(BaseModel):
    signing_secret: str = Field(description="The new secret: shown only here, once")
    previous_secret_signs_until: dt.datetime | None = Field(
        description="Until when each delivery also carries the previous secret's signature (null: no overlap)"
    )


class SandboxOfferRequest(BaseModel):
    """A test offer in the sandbox (decision 0116): every field optional, each defaulting to your profile's."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    zone: ZoneId | None = Field(default=None, max_length=64, description="One of your zones (default: your first)")
    band: Band | None = Field(default=None, description="One of your bands (default: your first)")
    needs: Distinct[CareNeed] | None = Field(
        default=None,
        min_length=1,
        max_length=len(CareNeed),
        description="Needs you meet, each once (default: personal_care, or your first skill)",
    )
    visits: VisitPattern = Field(
        default_factory=lambda: VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1, days_per_week=7),
        description="The visit pattern (default: two 30-minute calls a day, one carer, every day: 7.00 carer hours "
        "per week); the package's hours_per_week are its carer hours",
    )
    urgency: Literal["community", "reablement_step_down"] = "community"
    start_in_days: StrictInt = Field(default=3, ge=0, le=60, description="The care starts this many UK days from today")


class SandboxOffer(BaseModel):
    """A sandbox package made for you: its offer reaches you like any other (your webhook, GET /me/offers)."""

    package_id: uuid.UUID
    status: Literal["offered", "unplaced", "awaiting_approval"] = Field(
        description="offered: the offer is on its way to you; unplaced: the brokerage could not offer it to you "
        "(e.g. not enough free capacity: PATCH /me)"
    )
    sandbox: Literal[True] = True


class StaffUserView(BaseModel):
    """A named staff user of a provider's organisation (decision 0126)."""

    user_id: uuid.UUID
    provider_id: str
    username: str = Field(description="Their username at the identity provider (preferred_username, lower case)")
    name: str
    role: domain.StaffUserRole
    added_at: dt.datetime
    added_by: str = Field(description="Who added them: a council administrator's or an admin user's username")
    removed_at: dt.datetime | None = Field(default=None, description="Set once removed: access ends at once")


class StaffUserRequest(BaseModel):
    """A person to add as a named user; they sign in at the identity provider as ``username`` (an
    account there with the role provider_staff, made by the council's identity team)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    username: str = Field(
        max_length=100,
        pattern=domain.USERNAME.pattern,
        description="Their username at the identity provider: letters, digits and . _ @ + - (an account name or email)",
    )
    name: DisplayName = Field(min_length=1, max_length=200, description="As shown with their answers")
    role: domain.StaffUserRole = Field(default="staff", description="admin: also manages the organisation's users")


class InboxOffer(OfferNotice):
    """An open offer, and when one of the organisation's people first opened it (null: new)."""

    opened_at: dt.datetime | None = Field(description="First opened in the portal; null while unread")


class InboxView(BaseModel):
    """The open offers, soonest deadline first, and how many nobody in the organisation has opened."""

    unread: int = Field(ge=0, description="Open offers not yet opened by anyone of the organisation")
    offers: list[InboxOffer]


class OfferOpened(BaseModel):
    package_id: uuid.UUID
    offer_round: int
    opened_at: dt.datetime = Field(description="When it was first opened (this call or an earlier one)")


class AnsweredBy(BaseModel):
    user_id: uuid.UUID
    name: str


class HistoryEntry(BaseModel):
    """One offer no longer waiting for an answer: what was offered, the answer, who gave it, and
    how the offer ended (a lost bid's rank among the acceptable bids, never the winner's price)."""

    package_id: uuid.UUID
    offer_round: int
    tier: str
    zone: str
    band: str
    hours_per_week: Decimal = Field(description="Carer hours per week")
    received_at: dt.datetime
    window_closes_at: dt.datetime
    answer: Literal["bid", "declined"] | None = Field(description="null: not answered")
    hourly_rate: Decimal | None = Field(description="The bid, pounds per hour")
    decline_reason: str | None = Field(description="A code of the framework's decline reasons")
    answered_at: dt.datetime | None
    answered_by: AnsweredBy | None = Field(description="The named user who answered; null for a system or none")
    answered_with: str | None = Field(description="portal, webhook, automatic, or api_credential")
    outcome: domain.HistoryOutcome = Field(
        description="won, lost, closed (see closed_reason), declined (your answer: final, no notice follows), "
        "unanswered (window passed), awaiting (a bid in, the round open)"
    )
    closed_reason: str | None = Field(description="The closing notice's reason code (decision 0093)")
    rank: int | None = Field(description="A lost bid's rank among the ranked bids")
    ranked_bids: int | None
    closed_at: dt.datetime | None


class PackageAnswer(BaseModel):
    """Who answered one provider's offer of a package (for the council's package page)."""

    provider_id: str
    offer_round: int
    status: str
    answered_at: dt.datetime
    answered_with: str | None = Field(description="portal, webhook, automatic, or api_credential")
    answered_by: AnsweredBy | None = Field(description="The provider's named user; null for a system")


def _answer_view(row: asyncpg.Record) -> PackageAnswer:
    return PackageAnswer(
        provider_id=row["provider_id"],
        offer_round=row["offer_round"],
        status=row["status"],
        answered_at=row["answered_at"],
        answered_with="api_credential" if row["answered_with_credential"] else row["adapter"],
        answered_by=AnsweredBy(user_id=row["answered_by_user"], name=row["answered_by_name"])
        if row["answered_by_user"] is not None
        else None,
    )


def answers_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/packages", tags=["registry"])

    @router.get(
        "/{package_id}/answers",
        response_model=list[PackageAnswer],
        summary="Who answered each offer of a package: a provider's named user, or its system",
    )
    async def package_answers(package_id: uuid.UUID) -> list[PackageAnswer]:
        return [_answer_view(r) for r in await repo.package_answerers(service.pool, package_id)]

    return router


def staff_users_router(service: Service) -> APIRouter:
    """The council's administrators manage any provider's named users (decision 0126)."""
    router = APIRouter(prefix="/providers", tags=["registry"])

    @router.get("/{provider_id}/users", response_model=list[StaffUserView], summary="A provider's named staff users")
    async def list_users(provider_id: ProviderIdPath) -> list[dict]:
        return [handlers.staff_user_view(r) for r in await repo.staff_users(service.pool, provider_id)]

    @router.post(
        "/{provider_id}/users",
        status_code=201,
        response_model=StaffUserView,
        responses={404: {"description": "No such provider"}, 409: {"description": "Already a provider's user"}},
        summary="Add a named staff user (staff or admin) to a provider's organisation",
    )
    async def add_user(provider_id: ProviderIdPath, body: StaffUserRequest, caller: Caller) -> dict:
        return await in_unit_of_work(
            service,
            lambda uow: handlers.add_staff_user(
                uow, provider_id, username=body.username, name=body.name, role=body.role, added_by=caller.actor
            ),
        )

    @router.post(
        "/{provider_id}/users/{user_id}/remove",
        response_model=StaffUserView,
        responses={404: {"description": "No such live user of the provider"}},
        summary="Remove a provider's named user: their access ends at once; their answers keep their name",
    )
    async def remove_user(provider_id: ProviderIdPath, user_id: uuid.UUID, caller: Caller) -> dict:
        return await in_unit_of_work(
            service, lambda uow: handlers.remove_staff_user(uow, provider_id, user_id, removed_by=caller.actor)
        )

    return router


def me_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/me", tags=["provider API"], dependencies=[Depends(contract_version)])
    Me = Annotated[ProviderCaller, Depends(authenticator(service))]
    denied: dict[int | str, dict[str, Any]] = {401: {"description": "No valid provider credential"}}

    async def profile(provider_id: str, me: ProviderCaller | None = None) -> MeView:
        row = await fetch_one(service.pool, "SELECT * FROM providers WHERE provider_id = $1", provider_id)
        user = (
            SignedInUser(user_id=me.user_id, username=me.username or "", name=me.user_name or "", role=me.user_role)
            if me is not None and me.user_id is not None and me.user_role in ("staff", "admin")
            else None
        )
        # A pause of new offers is not shown to the provider: the safeguarding team tells it, as its
        # enquiry allows (004:755-756; decision record 0107).
        return MeView.model_validate(
            repo.profile_of(row).model_dump(exclude={"offers_paused"})
            | {"revision": row["revision"], "held_hours": row["held_hours"], "adapter": adapter_view(row)}
            | {"user": user}
        )

    @router.get(
        "",
        response_model=MeView,
        summary="Your registry entry: profile, capacity, and your adapter's settings (never a secret)",
        responses=denied,
    )
    async def read_me(me: Me) -> MeView:
        return await profile(me.provider_id, me)

    @router.patch(
        "",
        response_model=MeView,
        summary="Change your weekly capacity or the call times you cover",
        responses=denied | {409: {"description": "Capacity below what is committed and held"}},
    )
    async def change_me(me: Me, body: Annotated[ProfileChange, Body(default_factory=ProfileChange)]) -> MeView:
        await in_unit_of_work(
            service,
            lambda uow: handlers.update_own_profile(
                uow,
                me.provider_id,
                weekly_capacity_hours=body.weekly_capacity_hours,
                rules_changes=body.rules_changes(),
            ),
        )
        return await profile(me.provider_id, me)

    @router.post(
        "/change-requests",
        status_code=201,
        response_model=ChangeRequestView,
        responses=denied | {409: {"description": "One is already pending"}},
        summary="Ask to serve other zones or bands (the brokerage team approves)",
    )
    async def request_change(me: Me, body: CoverageChange) -> dict:
        return await in_unit_of_work(
            service,
            lambda uow: handlers.request_coverage_change(
                uow, me.provider_id, zones=body.zones, bands=[b.value for b in body.bands], reason=body.reason
            ),
        )

    paged = denied | {200: {"headers": pagination.LINK_HEADER_DOC}, 422: {"description": "A bad cursor or limit"}}
    Limit = Annotated[int, Query(ge=1, le=1000, description="Page size"), WHOLE_0_TO_9]

    def next_page(request: Request, response: Response, rows: list[Any], limit: int, *key: str) -> None:
        if len(rows) == limit:
            pagination.link_next(request, response, pagination.encode(*(rows[-1][k] for k in key)))

    @router.get(
        "/change-requests",
        response_model=list[ChangeRequestView],
        summary="Your change requests and their decisions, oldest first (request_id ascending)",
        responses=paged,
    )
    async def my_changes(
        me: Me, request: Request, response: Response, limit: Limit = 200, cursor: pagination.CursorParam = None
    ) -> list[dict]:
        after = pagination.decode(cursor, int)
        rows = await service.pool.fetch(
            "SELECT * FROM change_requests WHERE provider_id = $1 AND ($3::bigint IS NULL OR request_id > $3) "
            "ORDER BY request_id LIMIT $2",
            me.provider_id,
            limit,
            after[0] if after else None,
        )
        next_page(request, response, rows, limit, "request_id")
        return [handlers.change_request_view(r) for r in rows]

    @router.get(
        "/offers",
        response_model=list[OfferNotice],
        responses=paged,
        summary="Your offers: open ones (answer before window_closes_at), answered ones, or all",
        description="Soonest deadline first (`window_closes_at`, then `package_id`, then `offer_round`, all "
        'ascending); `limit` a page, the next in the `Link: <...>; rel="next"` header.',
    )
    async def my_offers(
        me: Me,
        request: Request,
        response: Response,
        status: Literal["open", "answered", "all"] = "open",
        limit: Limit = 200,
        cursor: pagination.CursorParam = None,
    ) -> list[OfferNotice]:
        condition = {
            "open": "status = 'offered' AND window_closes_at > now()",
            "answered": "status <> 'offered'",
            "all": "true",
        }[status]
        after = pagination.decode(cursor, dt.datetime, uuid.UUID, int) or (None, None, None)
        rows = await service.pool.fetch(
            f"""SELECT * FROM offers WHERE provider_id = $1 AND {condition}
                   AND ($3::timestamptz IS NULL
                        OR (window_closes_at, package_id, offer_round) > ($3, $4::uuid, $5::bigint))
                 ORDER BY window_closes_at, package_id, offer_round LIMIT $2""",
            me.provider_id,
            limit,
            *after,
        )
        next_page(request, response, rows, limit, "window_closes_at", "package_id", "offer_round")
        return [handlers.offer_notice(r, me.provider_id) for r in rows]

    @router.get(
        "/inbox",
        response_model=InboxView,
        responses=denied,
        summary="Your open offers (soonest deadline first) with when each was first opened, and the unread count",
        description="An offer is unread until someone of your organisation opens it "
        "(`POST /me/offers/{package_id}/open`; the portal does when its page is shown). Since 1.2.0.",
    )
    async def inbox(me: Me) -> InboxView:
        rows = await repo.open_offers_with_reads(service.pool, me.provider_id)
        offers = [
            InboxOffer(**handlers.offer_notice(r, me.provider_id).model_dump(), opened_at=r["opened_at"]) for r in rows
        ]
        return InboxView(unread=sum(o.opened_at is None for o in offers), offers=offers)

    @router.post(
        "/offers/{package_id}/open",
        response_model=OfferOpened,
        responses=denied | {404: {"description": "No offer of this package to you"}},
        summary="Mark your latest offer of a package opened (read) for your organisation; the first time counts",
        description="Who first opened it is kept (a named user; the API credential counts too). Since 1.2.0.",
    )
    async def open_offer(me: Me, package_id: uuid.UUID) -> OfferOpened:
        async def command(uow: UnitOfWork) -> OfferOpened:
            row = await repo.mark_opened(uow.conn, me.provider_id, package_id, me.user_id)
            if row is None:
                raise LookupError(f"no offer of package {package_id} to you")
            return OfferOpened(package_id=package_id, offer_round=row["offer_round"], opened_at=row["opened_at"])

        return await in_unit_of_work(service, command)

    @router.get(
        "/history",
        response_model=list[HistoryEntry],
        responses=paged,
        summary="Your answered and settled offers: the answer, who gave it, and the outcome",
        description="Offers no longer waiting for your answer (answered, won, lost, closed, or past their window), "
        "newest first (`received_at`, `package_id`, `offer_round` descending); `limit` a page, the next in the "
        '`Link: <...>; rel="next"` header. Since 1.2.0.',
    )
    async def history(
        me: Me, request: Request, response: Response, limit: Limit = 50, cursor: pagination.CursorParam = None
    ) -> list[dict]:
        after = pagination.decode(cursor, dt.datetime, uuid.UUID, int)
        rows = await repo.offer_history(service.pool, me.provider_id, limit=limit, after=after)
        next_page(request, response, rows, limit, "received_at", "package_id", "offer_round")
        return [handlers.history_entry(r) for r in rows]

    def admin_user(me: ProviderCaller) -> ProviderCaller:
        if not domain.can_manage_users(me.user_role):
            raise ProblemError(
                403,
                "only your organisation's admin users add and remove its users",
                code="not-a-provider-admin",
            )
        return me

    @router.get(
        "/users",
        response_model=list[StaffUserView],
        responses=paged | {403: {"description": "Not one of your organisation's admin users"}},
        summary="Your organisation's named staff users (admin users only)",
        description="Oldest first (`added_at`, `user_id` ascending); `limit` a page, the next in the "
        '`Link: <...>; rel="next"` header. Since 1.2.0.',
    )
    async def my_users(
        me: Me, request: Request, response: Response, limit: Limit = 200, cursor: pagination.CursorParam = None
    ) -> list[dict]:
        admin_user(me)
        after = pagination.decode(cursor, dt.datetime, uuid.UUID)
        rows = [
            r
            for r in await repo.staff_users(service.pool, me.provider_id)
            if after is None or (r["added_at"], r["user_id"]) > tuple(after)
        ][:limit]
        next_page(request, response, rows, limit, "added_at", "user_id")
        return [handlers.staff_user_view(r) for r in rows]

    @router.post(
        "/users",
        status_code=201,
        response_model=StaffUserView,
        responses=denied
        | {403: {"description": "Not one of your organisation's admin users"}, 409: {"description": "Already a user"}},
        summary="Add a named staff user to your organisation (admin users only). Since 1.2.0",
    )
    async def add_my_user(me: Me, body: StaffUserRequest) -> dict:
        admin_user(me)
        return await in_unit_of_work(
            service,
            lambda uow: handlers.add_staff_user(
                uow,
                me.provider_id,
                username=body.username,
                name=body.name,
                role=body.role,
                added_by=me.username or me.acted_by,
            ),
        )

    @router.post(
        "/users/{user_id}/remove",
        response_model=StaffUserView,
        responses=denied
        | {
            403: {"description": "Not one of your organisation's admin users"},
            404: {"description": "No such user of yours"},
            409: {"description": "You cannot remove yourself"},
        },
        summary="Remove one of your organisation's users: their access ends at once (admin users only). Since 1.2.0",
    )
    async def remove_my_user(me: Me, user_id: uuid.UUID) -> dict:
        admin_user(me)
        return await in_unit_of_work(
            service,
            lambda uow: handlers.remove_staff_user(
                uow, me.provider_id, user_id, removed_by=me.username or me.acted_by, by_user=me.user_id
            ),
        )

    answer_errors = denied | {
        404: {"description": "No offer of this package to you"},
        409: {
            "description": "Already answered, the round is over or the window closed, the adapter is automatic, "
            "no free capacity for it, or (a bid) earliest_start out of range"
        },
        422: {
            "description": "The body does not fit the schema, or the Idempotency-Key was used before for a "
            "different request (the field named is Idempotency-Key)"
        },
    }

    async def answer(
        me: ProviderCaller,
        package_id: uuid.UUID,
        body: BidRequest | DeclineRequest,
        key: str | None,
        response: Response,
    ) -> dict:
        """One bid or decline, once per Idempotency-Key (services/runtime/idempotency.py): the same
        request sent again returns the first answer's response, marked ``Idempotent-Replayed: true``."""
        action = "bid" if isinstance(body, BidRequest) else "decline"
        request_hash = idempotency.fingerprint(f"POST /me/offers/{package_id}/{action}", body)
        result, replayed = await in_unit_of_work(
            service,
            lambda uow: idempotency.once(
                uow,
                scope=me.provider_id,
                key=key,
                request_hash=request_hash,
                command=lambda: handlers.answer_through_api(
                    uow,
                    me.provider_id,
                    package_id,
                    body,
                    user_id=me.user_id,
                    credential_id=me.credential_id,
                ),
            ),
        )
        if replayed:
            response.headers[idempotency.REPLAYED_HEADER] = "true"
        return result

    @router.post(
        "/offers/{package_id}/bid",
        response_model=AnswerAccepted,
        responses=answer_errors,
        summary="Bid for a package offered to you: an hourly rate and the earliest start",
        description="Send an `Idempotency-Key` to make retries safe: a retried identical bid returns the "
        "original response (not a 409 'already bid').",
    )
    async def bid(
        me: Me,
        package_id: uuid.UUID,
        body: BidRequest,
        response: Response,
        idempotency_key: idempotency.IdempotencyKey = None,
    ) -> dict:
        return await answer(me, package_id, body, idempotency_key, response)

    @router.post(
        "/offers/{package_id}/decline",
        response_model=AnswerAccepted,
        responses=answer_errors,
        summary="Decline a package offered to you, with a reason from the framework's list",
        description="Send an `Idempotency-Key` to make retries safe: a retried identical decline returns the "
        "original response.",
    )
    async def decline(
        me: Me,
        package_id: uuid.UUID,
        body: DeclineRequest,
        response: Response,
        idempotency_key: idempotency.IdempotencyKey = None,
    ) -> dict:
        return await answer(me, package_id, body, idempotency_key, response)

    # Changes to packages you hold (decision record 0082): accept, or decline with a reason code.
    @router.get(
        "/package-changes",
        response_model=list[PackageChangeView],
        responses=paged,
        summary="Changes to packages you hold: open ones (answer before window_closes_at), or all",
        description="Newest first (`offered_at` descending, then `change_id` descending); `limit` a page, the next "
        'in the `Link: <...>; rel="next"` header.',
    )
    async def my_package_changes(
        me: Me,
        request: Request,
        response: Response,
        status: Literal["open", "all"] = "open",
        limit: Limit = 200,
        cursor: pagination.CursorParam = None,
    ) -> list[dict]:
        after = pagination.decode(cursor, dt.datetime, uuid.UUID) or (None, None)
        rows = await service.pool.fetch(
            """SELECT * FROM change_offers WHERE provider_id = $1 AND ($3 = 'all' OR status = 'offered')
                  AND ($4::timestamptz IS NULL OR (offered_at, change_id) < ($4, $5::uuid))
                ORDER BY offered_at DESC, change_id DESC LIMIT $2""",
            me.provider_id,
            limit,
            status,
            *after,
        )
        next_page(request, response, rows, limit, "offered_at", "change_id")
        base = "/me/package-changes"
        return [
            {
                "change_id": str(r["change_id"]),
                "package_id": str(r["package_id"]),
                "package": json.loads(r["spec"]),
                "previous_hours_per_week": str(r["previous_hours"]),
                "hours_per_week": str(r["hours_per_week"]),
                "effective_date": r["effective_date"],
                "window_closes_at": r["window_closes_at"],
                "status": r["status"],
                "answer_with": {
                    "accept": f"{base}/{r['change_id']}/accept",
                    "decline": f"{base}/{r['change_id']}/decline",
                },
            }
            for r in rows
        ]

    change_errors = denied | {
        404: {"description": "No such change offered to you"},
        409: {"description": "Already answered, window closed, or no capacity for the extra hours"},
    }

    @router.post(
        "/package-changes/{change_id}/accept",
        response_model=ChangeAnswered,
        responses=change_errors,
        summary="Accept a change to a package you hold: from its effective date you care to the new pattern",
    )
    async def accept_change(me: Me, change_id: uuid.UUID) -> dict:
        return await in_unit_of_work(
            service, lambda uow: handlers.answer_change_through_api(uow, me.provider_id, change_id, accept=True)
        )

    @router.post(
        "/package-changes/{change_id}/decline",
        response_model=ChangeAnswered,
        responses=change_errors,
        summary="Decline a change, with a reason code: the package is re-brokered and you carry on until then",
    )
    async def decline_change(me: Me, change_id: uuid.UUID, body: DeclineRequest) -> dict:
        return await in_unit_of_work(
            service,
            lambda uow: handlers.answer_change_through_api(
                uow, me.provider_id, change_id, accept=False, reason=body.reason, text=body.text
            ),
        )

    @router.get(
        "/packages",
        response_model=list[PlacementView],
        summary="Packages placed with you: live ones (ended_at null) and those that ended, with why",
        description="Newest placement first (`placed_at`, `package_id`, `offer_round`, all descending); `limit` a "
        'page, the next in the `Link: <...>; rel="next"` header.',
        responses=paged,
    )
    async def my_packages(
        me: Me, request: Request, response: Response, limit: Limit = 200, cursor: pagination.CursorParam = None
    ) -> list[dict]:
        after = pagination.decode(cursor, dt.datetime, uuid.UUID, int) or (None, None, None)
        rows = await service.pool.fetch(
            """SELECT p.package_id, p.offer_round, p.hours_per_week, p.hourly_rate, p.start_date, p.placed_at,
                      p.ended_at, p.end_reason,
                      -- The package as it now is: after the last change applied to this placement
                      -- (found by an attack: the offer's pattern was shown after an accepted change).
                      -- A change's spec starts on its effective date; the package's start is the offer's.
                      coalesce(
                          (SELECT jsonb_set(c.spec, '{start_date}', o.spec->'start_date') FROM change_offers c
                            WHERE c.package_id = p.package_id AND c.provider_id = p.provider_id
                              AND c.status = 'applied' AND c.offered_at >= p.placed_at
                            ORDER BY c.offered_at DESC LIMIT 1),
                          o.spec) AS spec
                 FROM placements p
                 LEFT JOIN LATERAL (SELECT spec FROM offers WHERE package_id = p.package_id AND provider_id =
                     p.provider_id ORDER BY offer_round DESC LIMIT 1) o ON true
                WHERE p.provider_id = $1
                  AND ($3::timestamptz IS NULL
                       OR (p.placed_at, p.package_id, p.offer_round) < ($3, $4::uuid, $5::bigint))
                ORDER BY p.placed_at DESC, p.package_id DESC, p.offer_round DESC LIMIT $2""",
            me.provider_id,
            limit,
            *after,
        )
        next_page(request, response, rows, limit, "placed_at", "package_id", "offer_round")
        return [
            {k: v for k, v in _plain(r).items() if k != "spec"}
            | {
                "package": json.loads(r["spec"]) if r["spec"] else None,
                "person": f"/me/packages/{r['package_id']}/person",
            }
            for r in rows
        ]

    @router.get(
        "/packages/{package_id}/person",
        response_model=PersonView,
        response_model_exclude_unset=True,
        responses=denied
        | {
            403: {"description": "You were offered the package but it is not placed with you"},
            404: {"description": "No such package of yours"},
            503: {"description": "The brokerage cannot be reached"},
        },
        summary="The person's details, for the provider the package is placed with; every disclosure is audited",
    )
    async def person(
        me: Me,
        package_id: uuid.UUID,
        fields: Annotated[
            Distinct[PersonField] | None,
            Query(max_length=len(get_args(PersonField)), description="Only these fields, each once (default: all)"),
        ] = None,
    ) -> dict:
        # A provider that held the package asks; the brokerage, whose record is the source of truth,
        # says whether it may still see the person: while placed with it, or while an agreement pays
        # it for today's care (a hand-back's notice, a carry-on until a hand-over: decision 0158).
        # One whose placement ended otherwise (cancelled, taken after a suspension) is refused there.
        placed = await service.pool.fetchval(
            "SELECT true FROM placements WHERE package_id = $1 AND provider_id = $2 LIMIT 1",
            package_id,
            me.provider_id,
        )
        if not placed:
            offered = await service.pool.fetchval(
                "SELECT true FROM offers WHERE package_id = $1 AND provider_id = $2 LIMIT 1", package_id, me.provider_id
            )
            if offered:
                raise ProblemError(
                    403,
                    "this package is not placed with you: only the provider it is placed with sees the person",
                    code="not-placed-with-you",
                )
            raise ProblemError(404, f"no package {package_id} of yours")
        return await _disclose(service, package_id, me, sorted(set(fields or PERSON_FIELDS)))

    @router.get(
        "/notices",
        response_model=list[OfferClosedNotice],
        summary="How your offers closed: won, lost (with your bid's rank) or closed, and why; newest first",
        description="One notice per offer that closed for you (decision record 0093); a webhook adapter is also "
        "POSTed each one, signed, as `kind: offer_closed`. A closed offer is never delivered again. "
        "`since`: only notices of offers closed after this time (for polling). Newest first (`closed_at` "
        'descending, then `notice_id` descending); `limit` a page, the next in the `Link: <...>; rel="next"` header.',
        responses=paged,
    )
    async def my_notices(
        me: Me,
        request: Request,
        response: Response,
        since: Moment | None = None,
        limit: Limit = 200,
        cursor: pagination.CursorParam = None,
    ) -> list[OfferClosedNotice]:
        after = pagination.decode(cursor, dt.datetime, uuid.UUID)
        rows = await repo.closures_of(service.pool, me.provider_id, limit, since, after)
        next_page(request, response, rows, limit, "closed_at", "notice_id")
        return [
            OfferClosedNotice.model_validate({k: v for k, v in dict(r).items() if k in OfferClosedNotice.model_fields})
            for r in rows
        ]

    @router.get(
        "/deliveries",
        response_model=list[DeliveryView],
        summary="Webhook deliveries to your system (offers, changes, closing notices, tests), every attempt of each",
        description="Newest first (`created_at` descending, then `delivery_id` descending), `limit` a page; the "
        'next page is in the `Link: <...>; rel="next"` header while there may be more. status: pending (being '
        "tried), delivered (2xx), failed (gave up), withdrawn (the offer was answered or closed before it got "
        "through: never sent again).",
        responses=denied | {200: {"headers": pagination.LINK_HEADER_DOC}, 422: {"description": "A bad cursor"}},
    )
    async def my_deliveries(
        me: Me,
        request: Request,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=1000), WHOLE_0_TO_9] = 100,
        cursor: pagination.CursorParam = None,
    ) -> list[DeliveryView]:
        after = pagination.decode(cursor, dt.datetime, uuid.UUID)
        rows = await repo.deliveries_of(service.pool, me.provider_id, limit, after)
        if len(rows) == limit:
            pagination.link_next(request, response, pagination.encode(rows[-1]["created_at"], rows[-1]["delivery_id"]))
        return await delivery_views(service.pool, rows)

    @router.get(
        "/deliveries/{delivery_id}",
        response_model=DeliveryView,
        summary="One webhook delivery to your system, with every attempt",
        responses=denied | {404: {"description": "No such delivery of yours"}},
    )
    async def my_delivery(me: Me, delivery_id: uuid.UUID) -> DeliveryView:
        row = await repo.delivery_of(service.pool, me.provider_id, delivery_id)
        if row is None:
            raise ProblemError(404, f"no delivery {delivery_id} of yours")
        return (await delivery_views(service.pool, [row]))[0]

    @router.post(
        "/deliveries/{delivery_id}/redeliver",
        status_code=202,
        response_model=DeliveryView,
        summary="Send a past delivery again: a new delivery (new id, same body, signed afresh) to your URL now",
        description="For a delivered or failed one (a pending one is still being tried: 409 `delivery-pending`). "
        "An offer or a change is redelivered only while it can still be answered (else 409 `offer-closed`: a "
        "closed offer is never delivered again); a closing notice or a test, always. The new delivery's "
        "`redelivery_of` names the original.",
        responses=denied
        | {
            404: {"description": "No such delivery of yours"},
            409: {"description": "Still pending, the offer closed, or no webhook URL registered"},
        },
    )
    async def redeliver(me: Me, delivery_id: uuid.UUID) -> DeliveryView:
        row = await in_unit_of_work(service, lambda uow: handlers.redeliver(uow, me.provider_id, delivery_id))
        return (await delivery_views(service.pool, [row]))[0]

    # ---- webhook self-service (decision 0100) ----

    @router.put(
        "/webhook",
        response_model=WebhookRegistered,
        summary="Register or change your webhook URL (the first registration makes your signing secret)",
        description="The URL must be https on a public address (checked now, and again at every delivery). A "
        "portal adapter becomes a webhook adapter: offers are POSTed from now on; an automatic adapter keeps "
        "answering by its rules (the URL takes test deliveries; the council switches adapters). Deliveries still "
        "being retried go to the new URL.",
        responses=denied | {422: {"description": "Not a URL, or not an allowed destination (`destination-refused`)"}},
    )
    async def register_webhook(me: Me, body: WebhookRegistration) -> WebhookRegistered:
        await check_webhook_url(body.url, service.settings.outbound_policy(), field="url")
        rules, secret = await in_unit_of_work(
            service, lambda uow: handlers.register_webhook(uow, me.provider_id, body.url, box=service.secrets)
        )
        row = await fetch_one(service.pool, "SELECT * FROM providers WHERE provider_id = $1", me.provider_id)
        return WebhookRegistered(
            adapter=adapter_view(row), receives_offers=rules.kind == "webhook", signing_secret=secret
        )

    @router.post(
        "/webhook/test",
        status_code=202,
        response_model=DeliveryView,
        summary="Send a test offer to your webhook: signed like an offer, marked as a test (kind test_offer)",
        description="A made-up package (no person behind it) in one of your zones and bands, in the "
        "`TestOfferNotice` shape: `kind` is `test_offer` and `test` is true; answering it is a 404. Delivered and "
        "retried like any delivery (for up to 10 minutes); follow it with `GET /me/deliveries/{delivery_id}`.",
        responses=denied | {409: {"description": "No webhook URL registered, or 5 test deliveries still pending"}},
    )
    async def send_test(me: Me) -> DeliveryView:
        row = await in_unit_of_work(service, lambda uow: handlers.queue_test_delivery(uow, me.provider_id))
        return (await delivery_views(service.pool, [row]))[0]

    @router.post(
        "/webhook/rotate-secret",
        response_model=SecretRotated,
        summary="Make a new signing secret; the previous one keeps signing too for an overlap you choose",
        description="From now every delivery attempt is signed with the new secret, and until "
        "`previous_secret_signs_until` also with the previous one: the `Homecare-Signature` header then holds "
        "two signatures, `v2=<new>,v2=<previous>`. Switch your receiver to the new secret any time within the "
        "overlap. The new secret is shown only in this response.",
        responses=denied | {409: {"description": "No webhook URL registered"}},
    )
    async def rotate_secret(
        me: Me, body: Annotated[SecretRotation, Body(default_factory=SecretRotation)]
    ) -> SecretRotated:
        secret, until = await in_unit_of_work(
            service,
            lambda uow: handlers.rotate_webhook_secret(
                uow, me.provider_id, overlap=dt.timedelta(hours=body.overlap_hours), box=service.secrets
            ),
        )
        return SecretRotated(signing_secret=secret, previous_secret_signs_until=until)

    @router.post(
        "/concerns",
        status_code=201,
        response_model=ConcernRaised,
        responses=denied
        | {
            404: {"description": "The package was never offered to you"},
            422: {"description": "No subject (field subject), or an unknown provider"},
        },
        summary="Raise a safeguarding concern about a package you were offered or hold, or about a provider",
        description="It goes to the council's safeguarding team; the answer is its reference.",
    )
    async def raise_concern(me: Me, body: ConcernRequest) -> dict:
        package_id = body.subject.package_id
        if package_id is not None and not await service.pool.fetchval(
            "SELECT true FROM offers WHERE package_id = $1 AND provider_id = $2 LIMIT 1", package_id, me.provider_id
        ):
            raise ProblemError(404, f"no package {package_id} of yours", field="subject.package_id")
        return await _raise(
            service, body, raised_by=me.provider_id, raised_by_kind="provider", credential_id=me.acted_by
        )

    @router.post(
        "/sandbox/offers",
        status_code=201,
        response_model=SandboxOffer,
        summary="Sandbox only: offer yourself a made-up package, to see an offer's whole life without a broker",
        description="In the sandbox (docs/guide/sandbox.md) the brokerage requests a package with a made-up person, "
        "in your zone and band, and offers it to you alone: it arrives like any offer (`kind: offer` to your "
        "webhook, `GET /me/offers`); bid and you win it (a closing notice `won`, the person's details under "
        "`GET /me/packages/{package_id}/person`; a bid above the band rate awaits a broker, as on the framework), "
        "decline and it is unplaced, leave it and its window ends it. Outside the sandbox: a 404 (`sandbox-only`).",
        responses=denied
        | {
            404: {"description": "Not the sandbox (code sandbox-only): the operation exists only there"},
            422: {"description": "A zone, band, need or double-handed visit pattern your profile does not cover"},
            503: {"description": "The brokerage cannot be reached"},
        },
    )
    async def sandbox_offer(
        me: Me, body: Annotated[SandboxOfferRequest, Body(default_factory=SandboxOfferRequest)]
    ) -> SandboxOffer:
        if not service.settings.sandbox:
            raise ProblemError(
                404, "test offers are made in the sandbox only (docs/guide/sandbox.md)", code="sandbox-only"
            )
        mine = await profile(me.provider_id)
        zone = body.zone or mine.zones[0]
        band = body.band or mine.bands[0]
        care = CareNeed("personal_care")
        needs = body.needs or ([care] if care in mine.skills else mine.skills[:1])
        # The brokerage never offers a package a provider does not cover: say so here, by field.
        if zone not in mine.zones:
            raise ProblemError(422, f"you do not cover zone {zone!r}: {mine.zones}", field="zone")
        if band not in mine.bands:
            raise ProblemError(422, f"you do not cover band {band!r}: {[b.value for b in mine.bands]}", field="band")
        if set(needs) - set(mine.skills):
            raise ProblemError(422, f"needs you do not meet: {sorted(set(needs) - set(mine.skills))}", field="needs")
        if body.visits.double_handed and not mine.double_handed:
            raise ProblemError(422, "you do not take double-handed calls", field="visits.carers_per_call")
        created = await _ask_brokerage(
            service,
            "/internal/sandbox/packages",
            {
                "provider_id": me.provider_id,
                "zone": zone,
                "band": band,
                "needs": needs,
                "visits": body.visits.model_dump(),
                "urgency": body.urgency,
                "start_in_days": body.start_in_days,
            },
        )
        return SandboxOffer(package_id=created["package_id"], status=created["status"])

    return router


async def _ask_brokerage(service: Service, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` to the brokerage's ``path`` with this service's own access token; its 2xx body.
    Unreachable or failing: a 503 problem; a 4xx: the same status with its detail."""
    if service.client_auth is None:
        raise ProblemError(503, "OIDC_ISSUER and PROVIDERS_OIDC_CLIENT_ID/_SECRET are not set")
    try:
        async with httpx.AsyncClient(
            base_url=service.settings.brokerage_url, timeout=10, auth=service.client_auth
        ) as c:
            response = await c.post(path, json=body)
    except (httpx.HTTPError, TokenError) as exc:
        log.warning("brokerage unreachable", path=path, error=repr(exc))
        raise ProblemError(503, "the brokerage service cannot be reached; try again shortly") from None
    if response.status_code in (404, 422):
        problem = response.json()
        raise ProblemError(response.status_code, problem.get("detail", "refused"), code=problem.get("code"))
    if not response.is_success:
        log.warning("brokerage refused", path=path, status=response.status_code, body=response.text[:300])
        raise ProblemError(503, "the brokerage could not do it now; try again shortly")
    return response.json()


async def _disclose(service: Service, package_id: uuid.UUID, me: ProviderCaller, fields: list[str]) -> dict[str, Any]:
    """Ask the brokerage, which holds the person's details, to disclose them to this provider: it
    checks the award again on its own record and writes the disclosure to its audit log.

    The call carries this service's own access token (client credentials of the ``providers``
    client, ``PROVIDERS_OIDC_CLIENT_ID``/``_SECRET``); the provider and credential in the body are
    what this service verified (the provider's hcp_ credential), asserted under that token."""
    settings = service.settings
    auth = service.client_auth
    if auth is None:
        raise ProblemError(
            503, "disclosure is not configured: OIDC_ISSUER and PROVIDERS_OIDC_CLIENT_ID/_SECRET are not set"
        )
    try:
        async with httpx.AsyncClient(base_url=settings.brokerage_url, timeout=10, auth=auth) as client:
            response = await client.post(
                "/internal/disclosures",
                json={
                    "package_id": str(package_id),
                    "provider_id": me.provider_id,
                    "credential_id": me.acted_by,
                    "fields": fields,
                },
            )
    except (httpx.HTTPError, TokenError) as exc:
        log.warning("brokerage unreachable for a disclosure", error=repr(exc))
        raise ProblemError(503, "the brokerage service cannot be reached; try again shortly") from None
    if response.status_code == 403:
        raise ProblemError(
            403,
            "this package is not placed with you: only the provider caring for the person sees them",
            code="not-placed-with-you",
        )
    if response.status_code == 404:
        raise ProblemError(404, f"no package {package_id} of yours")
    if response.status_code != 200:
        log.warning("brokerage refused a disclosure", status=response.status_code, body=response.text[:300])
        raise ProblemError(503, "the brokerage could not disclose the details now; try again shortly")
    return response.json()


# ---- the quality and risk register (decision 0103): the contracts and quality team ---------

CQC_IMPORT_PATH = "/quality/cqc-imports"
RiskRag = Literal["low", "medium", "high"]


class CqcRatingEntry(BaseModel):
    """A CQC rating entered by hand (the CSV import does many at once)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    rating: Literal["outstanding", "good", "requires_improvement", "inadequate", "not_yet_rated"]
    inspected_on: Day | None = Field(
        default=None, description="The CQC's publication date of the rating (UK date); optional for not_yet_rated"
    )
    cqc_location_id: str | None = Field(
        default=None, pattern=domain.CQC_LOCATION_ID.pattern, description="e.g. 1-101669561 (no leading zero)"
    )
    note: FreeText = Field(default="", max_length=2000, description="Kept in the register only")
    correction: StrictBool = Field(
        default=False,
        description="Correct the register with a rating published before the one held (needs a note saying why)",
    )


class CqcLocation(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    cqc_location_id: str = Field(
        pattern=domain.CQC_LOCATION_ID.pattern, description="CQC's location id, e.g. 1-101669561 (no leading zero)"
    )


class RiskReview(BaseModel):
    """A review of the local risk rating (RAG): low = green, medium = amber, high = red."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    local_risk: RiskRag
    reason: RiskReason = Field(description="Why, as a code (docs/guide/quality-register.md)")
    note: FreeText = Field(default="", max_length=2000, description="The reviewer's words: kept in the register only")


class ComplaintEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    theme: ComplaintTheme
    received_on: Day = Field(description="UK date the council received it")
    package_id: uuid.UUID | None = None
    summary: FreeText = Field(default="", max_length=4000, description="Kept in the register only, never on an event")


class ComplaintClosing(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    outcome: Literal["upheld", "partly_upheld", "not_upheld"]
    note: FreeText = Field(default="", max_length=2000)


class PlanEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    area: RiskReason = Field(description="What the plan is to improve, as a code")
    actions: FreeText = Field(default="", max_length=4000, description="The agreed actions: kept in the register only")
    due_on: Day = Field(description="UK date the plan is due to be met")


class PlanClosing(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    met: StrictBool = Field(description="Whether the plan was met by its due date")
    note: FreeText = Field(default="", max_length=2000)


async def register_view(service: Service, provider_id: str) -> dict[str, Any]:
    """One provider's register: the scored inputs and score with its points, the CQC location, who
    reviewed the local risk, when and why, complaints, plans, incidents and the history of changes."""
    row = await repo.register_row(service.pool, provider_id)
    if row is None:
        raise ProblemError(404, f"no provider {provider_id!r}")
    state = await handlers.register_state(service.pool, row)
    inputs, _counts = await handlers.register_inputs(service.pool, row)
    scored = quality.score(inputs, handlers.quality_weights())
    complaints = await service.pool.fetch(
        "SELECT * FROM complaints WHERE provider_id = $1 ORDER BY received_on DESC", provider_id
    )
    plans = await service.pool.fetch(
        "SELECT * FROM improvement_plans WHERE provider_id = $1 ORDER BY due_on", provider_id
    )
    incidents = await service.pool.fetch(
        """SELECT package_id, kind, on_date, days_late, source FROM delivery_incidents
            WHERE provider_id = $1 ORDER BY on_date DESC""",
        provider_id,
    )
    changes = await repo.quality_changes(service.pool, provider_id)
    return {
        "provider_id": provider_id,
        "name": repo.profile_of(row).name,
        "status": repo.profile_of(row).status,
        **state.model_dump(mode="json"),
        "cqc_source": row["cqc_source"],
        "local_risk_reviewed_by": row["local_risk_reviewed_by"],
        "local_risk_reviewed_at": row["local_risk_reviewed_at"],
        "local_risk_reason": row["local_risk_reason"],
        "score": scored.as_record(),
        "score_explained": quality.explain(scored.as_record()),
        "complaints": [_plain(c) for c in complaints],
        "improvement_plans": [
            _plain(p) | {"overdue": p["closed_on"] is None and p["due_on"] < clock.uk_date(handlers.now())}
            for p in plans
        ],
        "incidents": [dict(i) for i in incidents],
        "changes": [dict(c) | {"detail": json.loads(c["detail"])} for c in changes],
    }


def quality_router(service: Service) -> APIRouter:
    """The register's routes: read by those who follow the work, changed by contracts and quality."""
    router = APIRouter(tags=["quality register"])
    missing: dict[int | str, dict[str, Any]] = {404: {"description": "No such provider"}}

    @router.get("/quality/register", summary="Every provider's quality and risk register, with its score")
    async def whole_register() -> list[dict]:
        """``[{provider_id, name, status, cqc_location_id, cqc_rating, cqc_inspected_on, local_risk,
        local_risk_reviewed_on, hand_backs_12m, late_starts_12m, open_complaints,
        open_improvement_plans, quality_score}]``, by provider id; the score is 0-100."""
        ids = await service.pool.fetch("SELECT provider_id FROM providers ORDER BY provider_id")
        out = []
        for r in ids:
            row = await repo.register_row(service.pool, r["provider_id"])
            if row is None:
                continue
            state = await handlers.register_state(service.pool, row)
            profile = repo.profile_of(row)
            out.append(
                {"provider_id": profile.provider_id, "name": profile.name, "status": profile.status}
                | state.model_dump(mode="json")
            )
        return out

    @router.get(
        "/providers/{provider_id}/quality", summary="One provider's quality and risk register", responses=missing
    )
    async def read_register(provider_id: ProviderIdPath) -> dict:
        return await register_view(service, provider_id)

    async def run(command: Callable[[UnitOfWork], Awaitable[Any]]) -> dict:
        event = await in_unit_of_work(service, command)
        return {"event_id": str(event.event_id), **event.quality_register.model_dump(mode="json")}

    @router.put(
        "/providers/{provider_id}/quality/cqc",
        summary="Enter the provider's CQC rating and its publication date by hand",
        responses=missing
        | {409: {"description": "The CQC location id is another provider's, or the rating is older than the one held"}},
    )
    async def enter_cqc(provider_id: ProviderIdPath, body: CqcRatingEntry, caller: Caller) -> dict:
        """Returns the register after the change. 422 when a rating other than not_yet_rated has no
        ``inspected_on``, or it is in the future or before the CQC's ratings began; 409
        ``older-than-held`` when it was published before the rating held, unless ``correction`` (with
        a ``note``)."""
        return await run(
            lambda uow: handlers.record_cqc_rating(
                uow,
                provider_id,
                rating=body.rating,
                inspected_on=body.inspected_on,
                location_id=body.cqc_location_id,
                by=caller.actor,
                note=body.note,
                correction=body.correction,
            )
        )

    @router.put(
        "/providers/{provider_id}/quality/cqc-location",
        summary="Set the CQC location id the provider is registered under (how the CQC import finds it)",
        responses=missing | {409: {"description": "The CQC location id is another provider's"}},
    )
    async def set_location(provider_id: ProviderIdPath, body: CqcLocation, caller: Caller) -> dict:
        return await run(
            lambda uow: handlers.set_cqc_location(uow, provider_id, location_id=body.cqc_location_id, by=caller.actor)
        )

    @router.post(
        "/providers/{provider_id}/quality/risk-reviews",
        summary="Review the provider's local risk rating (RAG), with a reason code",
        responses=missing,
    )
    async def review_risk(provider_id: ProviderIdPath, body: RiskReview, caller: Caller) -> dict:
        """The reviewer is the access token's user; the review's time is now (UTC, shown in UK time)."""
        return await run(
            lambda uow: handlers.review_local_risk(
                uow, provider_id, risk=body.local_risk, reason=body.reason, note=body.note, by=caller.actor
            )
        )

    @router.post(
        "/providers/{provider_id}/quality/complaints",
        status_code=201,
        summary="Record a complaint about the provider, coded by theme",
        responses=missing,
    )
    async def add_complaint(provider_id: ProviderIdPath, body: ComplaintEntry, caller: Caller) -> dict:
        return await run(
            lambda uow: handlers.record_complaint(
                uow,
                provider_id,
                theme=body.theme,
                received_on=body.received_on,
                package_id=body.package_id,
                summary=body.summary,
                by=caller.actor,
            )
        )

    @router.post(
        "/providers/{provider_id}/quality/complaints/{complaint_id}/close",
        summary="Close a complaint with its outcome",
        responses={404: {"description": "No such open complaint"}},
    )
    async def end_complaint(
        provider_id: ProviderIdPath, complaint_id: uuid.UUID, body: ComplaintClosing, caller: Caller
    ) -> dict:
        return await run(
            lambda uow: handlers.close_complaint(
                uow, provider_id, complaint_id, outcome=body.outcome, note=body.note, by=caller.actor
            )
        )

    @router.post(
        "/providers/{provider_id}/quality/plans",
        status_code=201,
        summary="Open a quality improvement plan with its due date",
        responses=missing,
    )
    async def add_plan(provider_id: ProviderIdPath, body: PlanEntry, caller: Caller) -> dict:
        return await run(
            lambda uow: handlers.open_improvement_plan(
                uow, provider_id, area=body.area, actions=body.actions, due_on=body.due_on, by=caller.actor
            )
        )

    @router.post(
        "/providers/{provider_id}/quality/plans/{plan_id}/close",
        summary="Close a quality improvement plan: met or not",
        responses={404: {"description": "No such open plan"}},
    )
    async def end_plan(provider_id: ProviderIdPath, plan_id: uuid.UUID, body: PlanClosing, caller: Caller) -> dict:
        return await run(
            lambda uow: handlers.close_improvement_plan(
                uow, provider_id, plan_id, met=body.met, note=body.note, by=caller.actor
            )
        )

    @router.post(
        CQC_IMPORT_PATH,
        summary="Import CQC ratings from the CQC's care directory CSV (text/csv body)",
        description="All or nothing: the report lists what changed (or would have) and every refused row with "
        "its line, column and problem; when any row is refused nothing changes (`applied` false). Locations not "
        "on the framework are counted and ignored. `dry_run` reports without changing anything. "
        "The assumed columns: docs/guide/quality-register.md.",
        openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
        responses={422: {"description": "Not a CQC care directory CSV: no header with the required columns"}},
    )
    async def import_cqc(
        request: Request,
        caller: Caller,
        dry_run: bool = False,
        file_name: Annotated[DisplayName, Query(max_length=200)] = "",
    ) -> dict:
        """``{import_id, applied, rows, changed: [{line, provider_id, cqc_location_id, cqc_rating_was,
        cqc_rating, cqc_inspected_on_was, cqc_inspected_on}], unchanged: [provider_id],
        refused: [{line, cqc_location_id, field, problem}], not_on_the_framework}``."""
        data = await request.body()
        try:
            result = await in_unit_of_work(
                service,
                lambda uow: handlers.import_cqc(uow, data, by=caller.actor, file_name=file_name, dry_run=dry_run),
            )
        except domain.CqcFileRefused as exc:
            raise ProblemError(422, str(exc), field="file") from None
        return result.report()

    @router.get(
        CQC_IMPORT_PATH + "/{import_id}",
        summary="The report of an earlier CQC import",
        responses={404: {"description": "No such import"}},
    )
    async def read_import(import_id: uuid.UUID) -> dict:
        row = await service.pool.fetchrow("SELECT * FROM cqc_imports WHERE import_id = $1", import_id)
        if row is None:
            raise ProblemError(404, f"no CQC import {import_id}")
        return json.loads(row["report"]) | {
            "imported_by": row["imported_by"],
            "imported_at": row["imported_at"],
            "file_name": row["file_name"],
        }

    return router
