"""Providers service bootstrap: ``python -m services.providers``.

HTTP: the registry, the brokerage team's registry operations, and the provider API (``/me``). Consumes:
    brokerage.packages (offers and their
outcomes). Publishes (through its outbox): providers.answers, providers.registry.
Start-up: registers the framework's providers from reference data.
Background: webhook deliveries of offers to providers' own systems.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from fastapi import FastAPI

from schemas import topics
from schemas.events import (
    BidSubmitted,
    ChangeAnswered,
    ChangeDeclined,
    ChangeOffered,
    ChangeWithdrawn,
    OfferDeclined,
    OfferMade,
    PackageCancelled,
    PackageChanged,
    PackageEnded,
    PackageHandedBack,
    PackageHandedOver,
    PackagePaused,
    PackagePlaced,
    PackageReopened,
    PackageRequested,
    PackageResumed,
    PackageStarted,
    PackageUnplaced,
    ProviderQualityRecorded,
    ProviderUpdated,
)
from services.providers import api, domain, handlers
from services.providers import repository as repo
from services.runtime import metrics
from services.runtime.asyncapi import declare_publishes
from services.runtime.db import is_transient
from services.runtime.http import create_app
from services.runtime.logging import get_logger
from services.runtime.outbound import guarded_client
from services.runtime.outbox import unit_of_work
from services.runtime.reference import load_provider_seed, load_provider_staff_seed, load_quality_register_seed
from services.runtime.sealing import reseal_column
from services.runtime.service import Service
from services.runtime.settings import ServiceSettings, load

log = get_logger(__name__)


def build(settings: ServiceSettings | None = None) -> tuple[Service, FastAPI]:
    settings = settings or load("providers")
    service = Service(settings, migrations=Path(__file__).parent / "migrations")

    service.consumer.on(PackageRequested)(handlers.record_request)
    service.consumer.on(OfferMade)(handlers.answer_offer)
    service.consumer.on(PackagePlaced)(handlers.record_award)
    service.consumer.on(PackageUnplaced)(handlers.release_bids)
    service.consumer.on(PackageCancelled)(handlers.release_package)
    service.consumer.on(PackageHandedBack)(handlers.record_hand_back)
    service.consumer.on(PackageReopened)(handlers.release_reopened)
    service.consumer.on(PackageEnded)(handlers.record_ending)
    service.consumer.on(PackagePaused)(handlers.record_pause)
    service.consumer.on(PackageResumed)(handlers.record_resume)
    service.consumer.on(ChangeOffered)(handlers.answer_change_offer)
    service.consumer.on(PackageChanged)(handlers.record_change)
    service.consumer.on(ChangeDeclined)(handlers.close_change_offer)
    service.consumer.on(ChangeWithdrawn)(handlers.withdraw_change_offer)
    service.consumer.on(PackageHandedOver)(handlers.record_hand_over)
    service.consumer.on(PackageStarted)(handlers.record_start)
    service.consumer.subscribe(*topics.CONSUMED_BY["providers"])
    declare_publishes(
        service,
        topics.ANSWERS,
        BidSubmitted,
        OfferDeclined,
        ChangeAnswered,
        description=(
            "Providers' answers to offers: a bid at a rate, or a decline with a reason code; and to a change of "
            "a package they hold: accepted, or declined with a reason code. Keyed by package id."
        ),
    )
    declare_publishes(
        service,
        topics.REGISTRY,
        ProviderUpdated,
        ProviderQualityRecorded,
        description="Each provider's whole current profile (the latest revision wins) and each change to its "
        "quality and risk register, with the register after it. Compacted, keyed by provider id.",
    )

    @service.on_startup
    async def seal_secrets(svc: Service) -> None:
        """Webhook secrets stored in clear (before sealing existed) or under an older key, sealed anew."""
        async with svc.pool.acquire() as conn:
            resealed = await reseal_column(conn, svc.secrets, "providers", "provider_id", "webhook_secret")
            # A rotation's previous secret, still signing through its overlap (decision 0100).
            resealed += await reseal_column(conn, svc.secrets, "providers", "provider_id", "previous_webhook_secret")
        if resealed:
            log.info("webhook secrets sealed", count=resealed)

    @service.on_startup
    async def seed(svc: Service) -> None:
        async with unit_of_work(svc.pool) as uow:
            added = await handlers.seed_registry(uow, load_provider_seed())
            register_seed = load_quality_register_seed()
            # Before the register's first change, so that change carries the dated hand-backs' count.
            dated = await handlers.date_seeded_hand_backs(uow, register_seed)
            started = await handlers.seed_quality_register(uow, register_seed)
            users = await repo.seed_staff_users(uow.conn, load_provider_staff_seed())
        log.info(
            "provider registry seeded",
            added=added,
            hand_backs_dated=dated,
            quality_register_started=started,
            staff_users=users,
        )

    @service.gauge_refreshers.append
    async def webhook_backlog(svc: Service) -> None:
        rows = await svc.pool.fetch(
            "SELECT status, count(*) FROM webhook_deliveries WHERE status IN ('pending', 'failed') GROUP BY status"
        )
        counts: dict[str, int] = {row["status"]: row["count"] for row in rows}
        for status in ("pending", "failed"):
            metrics.WEBHOOK_DELIVERIES.labels(status).set(counts.get(status, 0))

    @service.in_background
    async def webhooks(svc: Service) -> None:
        """Offers to webhook adapters, from the deliveries table, retried with backoff."""
        policy = settings.outbound_policy()
        async with guarded_client(policy, timeout=settings.webhook_timeout_seconds) as client:
            while not svc.stopping.is_set():
                if not await handlers.deliver_due_webhooks(svc.pool, client, settings, svc.secrets):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(svc.stopping.wait(), timeout=settings.webhook_poll_seconds)

    @service.in_background
    async def endings(svc: Service) -> None:
        """Endings dated ahead: each placement's hours released when its effective date (UK) comes."""
        while not svc.stopping.is_set():
            try:
                async with unit_of_work(svc.pool) as uow:
                    released = await handlers.release_due_endings(uow)
            except Exception as exc:
                if is_transient(exc):
                    raise  # the database is away: the guard backs off and restarts this loop
                log.error("could not release an ending placement; trying again later", error=repr(exc))
                released = None
            if released is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(svc.stopping.wait(), timeout=settings.ending_poll_seconds)

    app = create_app(
        service,
        title="Providers",
        version=api.CONTRACT_VERSION,
        description=(
            "The framework's provider registry and the provider API. Providers' own systems (webhook adapters) "
            "and staff (portal) answer offers under `/me` with a provider credential "
            "(`Authorization: Bearer hcp_...`); the brokerage team's operations take the admin token."
        ),
        uploads={api.CQC_IMPORT_PATH: domain.MAX_CQC_FILE_BYTES},
    )
    app.include_router(api.build_router(service))
    app.include_router(api.change_requests_router(service))
    app.include_router(api.applications_router(service))
    app.include_router(api.me_router(service))
    app.include_router(api.staff_users_router(service))
    app.include_router(api.answers_router(service))
    app.include_router(api.concerns_router(service))
    app.include_router(api.quality_router(service))
    return service, app
