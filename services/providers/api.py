"""The providers service's HTTP API: the framework's registry, and each provider's offers."""

from __future__ import annotations

import json
from decimal import Decimal

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from services.providers import domain, handlers
from services.providers import repository as repo
from services.runtime.http import ProblemError
from services.runtime.outbox import unit_of_work


class StatusChange(BaseModel):
    """A decision of the council's on a provider's framework membership."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    status: Literal["active", "suspended", "left"] = Field(description="active reinstates a suspended provider; left is final")
    reason: str = Field(min_length=1, max_length=500, description="Why: kept in the provider's status history")
    decided_by: str = Field(min_length=1, max_length=100)


def _plain(record) -> dict:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in dict(record).items()}


def build_router(service) -> APIRouter:
    router = APIRouter(prefix="/providers", tags=["registry"])

    @router.get("", summary="The framework's providers")
    async def list_providers() -> list[dict]:
        rows = await service.pool.fetch("SELECT * FROM providers ORDER BY provider_id")
        return [repo.profile_of(r).model_dump(mode="json") | {"revision": r["revision"], "held_hours": str(r["held_hours"])}
                for r in rows]

    @router.get("/{provider_id}", summary="One provider's registry entry")
    async def read_provider(provider_id: str) -> dict:
        row = await service.pool.fetchrow("SELECT * FROM providers WHERE provider_id = $1", provider_id)
        if row is None:
            raise ProblemError(404, f"no provider {provider_id!r}")
        return repo.profile_of(row).model_dump(mode="json") | {
            "revision": row["revision"], "held_hours": str(row["held_hours"]), "adapter": json.loads(row["adapter"])["kind"],
        }

    @router.get("/{provider_id}/offers", summary="Offers a provider received, with its answers")
    async def provider_offers(
        provider_id: str,
        status: Annotated[str | None, Query(pattern="^(offered|bid|declined|won|lost|closed)$")] = None,
    ) -> list[dict]:
        if not await service.pool.fetchval("SELECT true FROM providers WHERE provider_id = $1", provider_id):
            raise ProblemError(404, f"no provider {provider_id!r}")
        rows = await service.pool.fetch(
            """SELECT package_id, offer_round, tier, status, hourly_rate, decline_reason, decline_text, window_closes_at,
                      received_at, answered_at, spec
                 FROM offers WHERE provider_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY received_at""",
            provider_id, status,
        )
        return [_plain(r) | {"spec": json.loads(r["spec"]), "package_id": str(r["package_id"])} for r in rows]

    @router.post("/{provider_id}/status", summary="Suspend, reinstate, or record that a provider left the framework",
                 description="A suspended or departed provider gets no more offers, and the brokerage re-brokers every "
                             "package placed with it, most urgent first.",
                 responses={404: {"description": "No such provider"}, 409: {"description": "Not a change the rules allow"}})
    async def change_status(provider_id: str, body: StatusChange) -> dict:
        try:
            async with unit_of_work(service.pool) as uow:
                updated = await handlers.change_status(uow, provider_id, status=body.status, reason=body.reason,
                                                       decided_by=body.decided_by)
        except LookupError as exc:
            raise ProblemError(404, str(exc)) from None
        except domain.StatusRefused as exc:
            raise ProblemError(409, str(exc)) from None
        return {"provider_id": provider_id, "status": updated.profile.status, "revision": updated.revision}

    @router.get("/{provider_id}/status-history", summary="The council's decisions on a provider's membership")
    async def status_history(provider_id: str) -> list[dict]:
        if not await service.pool.fetchval("SELECT true FROM providers WHERE provider_id = $1", provider_id):
            raise ProblemError(404, f"no provider {provider_id!r}")
        return [dict(r) for r in await repo.status_history(service.pool, provider_id)]

    return router
