"""The notifications service's HTTP API: what was sent about a package."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from services.notifications import repository as repo


def build_router(service) -> APIRouter:
    router = APIRouter(prefix="/packages", tags=["confirmations"])

    @router.get("/{package_id}/confirmations", summary="Confirmations sent about a package")
    async def confirmations(package_id: uuid.UUID) -> list[dict]:
        return [dict(r) for r in await repo.confirmations_for(service.pool, package_id)]

    return router
