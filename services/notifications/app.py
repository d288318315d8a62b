"""Notifications service bootstrap: ``python -m services.notifications``.

HTTP: confirmations per package. Consumes: brokerage.packages (placements).
Publishes (through its outbox): notifications.confirmations.
"""

from __future__ import annotations

from pathlib import Path

from schemas import topics
from schemas.events import PackagePlaced, PlacementConfirmed
from services.notifications import api, handlers
from services.runtime.asyncapi import declare_publishes
from services.runtime.http import create_app
from services.runtime.service import Service
from services.runtime.settings import ServiceSettings, load


def build(settings: ServiceSettings | None = None) -> tuple[Service, object]:
    settings = settings or load("notifications")
    service = Service(settings, migrations=Path(__file__).parent / "migrations")

    service.consumer.on(PackagePlaced)(handlers.confirm_placement)
    service.consumer.subscribe(*topics.CONSUMED_BY["notifications"])
    declare_publishes(service, topics.CONFIRMATIONS, PlacementConfirmed,
                      description="A placement confirmed to its recipients. Keyed by package id.")

    app = create_app(service, title="Notifications", description="Placement confirmations to everyone concerned.")
    app.include_router(api.build_router(service))
    return service, app

