"""Providers service bootstrap: ``python -m services.providers``.

HTTP: the registry and providers' offers. Consumes: brokerage.packages (offers and their
outcomes). Publishes (through its outbox): providers.answers, providers.registry.
Start-up: registers the framework's providers from reference data.
"""

from __future__ import annotations

from pathlib import Path

from schemas import topics
from schemas.events import (
    BidSubmitted,
    OfferDeclined,
    OfferMade,
    PackageCancelled,
    PackageHandedBack,
    PackagePlaced,
    PackageReopened,
    PackageUnplaced,
    ProviderUpdated,
)
from services.providers import api, handlers
from services.runtime.asyncapi import declare_publishes
from services.runtime.http import create_app
from services.runtime.logging import get_logger
from services.runtime.outbox import unit_of_work
from services.runtime.reference import load_provider_seed
from services.runtime.service import Service
from services.runtime.settings import ServiceSettings, load

log = get_logger(__name__)


def build(settings: ServiceSettings | None = None) -> tuple[Service, object]:
    settings = settings or load("providers")
    service = Service(settings, migrations=Path(__file__).parent / "migrations")

    service.consumer.on(OfferMade)(handlers.answer_offer)
    service.consumer.on(PackagePlaced)(handlers.record_award)
    service.consumer.on(PackageUnplaced)(handlers.release_bids)
    service.consumer.on(PackageCancelled)(handlers.release_package)
    service.consumer.on(PackageHandedBack)(handlers.record_hand_back)
    service.consumer.on(PackageReopened)(handlers.release_reopened)
    service.consumer.subscribe(*topics.CONSUMED_BY["providers"])
    declare_publishes(service, topics.ANSWERS, BidSubmitted, OfferDeclined,
                      description="Providers' answers to offers: a bid at a rate, or a decline with a reason code. Keyed by package id.")
    declare_publishes(service, topics.REGISTRY, ProviderUpdated,
                      description="Each provider's whole current profile; the latest revision wins. Compacted, keyed by provider id.")

    @service.on_startup
    async def seed(svc: Service) -> None:
        async with unit_of_work(svc.pool) as uow:
            added = await handlers.seed_registry(uow, load_provider_seed())
        log.info("provider registry seeded", added=added)

    app = create_app(service, title="Providers", description="The framework's provider registry and providers' answers to offers.")
    app.include_router(api.build_router(service))
    return service, app

