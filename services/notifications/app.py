"""Notifications service bootstrap: ``python -m services.notifications``.

HTTP: recipients' contacts and preferences; what was sent per package. Consumes:
brokerage.packages (placements, unplaced, offers, cancellations, hand-backs, re-brokering,
starts, above-rate exceptions). Publishes (through its outbox):
notifications.confirmations. Background: the dispatcher (sends due deliveries, retries, gives up).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI

from schemas import topics
from schemas.events import (
    ChangeDeclined,
    ChangeOffered,
    ChangeWithdrawn,
    DischargeFallbackUnavailable,
    DischargeReferralReleased,
    DischargeReferred,
    ExceptionDecided,
    ExceptionFirstApproved,
    ExceptionRequested,
    FundingRecorded,
    NotificationFailed,
    OfferMade,
    PackageCancelled,
    PackageChanged,
    PackageEnded,
    PackageHandedBack,
    PackageHandedOver,
    PackagePaused,
    PackagePlaced,
    PackageReopened,
    PackageResumed,
    PackageReviewed,
    PackageStarted,
    PackageUnplaced,
    PlacementConfirmed,
)
from services.notifications import api, handlers
from services.notifications import repository as repo
from services.notifications.channels import Channels, configured
from services.notifications.templates import Templates
from services.runtime import metrics
from services.runtime.asyncapi import declare_publishes
from services.runtime.db import is_transient
from services.runtime.http import create_app
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork, unit_of_work
from services.runtime.reference import DEFAULT_DIR, load_provider_seed, reference_dir
from services.runtime.sealing import reseal_column
from services.runtime.service import Service
from services.runtime.settings import ServiceSettings, load

log = get_logger(__name__)
EXPIRY_LOOK_SECONDS = 1.0  # how often messages waiting for a contact are looked at for expiry


class NotificationsService(Service):
    """The notifications process, with what its handlers run with (tests and tools drive them directly)."""

    rules: handlers.NotificationRules
    channels: Channels


def build(settings: ServiceSettings | None = None) -> tuple[NotificationsService, FastAPI]:
    settings = settings or load("notifications")
    service = NotificationsService(settings, migrations=Path(__file__).parent / "migrations")
    rules = handlers.NotificationRules(
        templates=Templates(),
        configured=configured(settings),
        providers_url=settings.providers_url,
        contact_grace=dt.timedelta(seconds=settings.contact_grace_seconds),
        max_attempts=settings.delivery_max_attempts,
        backoff_initial=settings.delivery_backoff_initial_seconds,
        backoff_max=settings.delivery_backoff_max_seconds,
        lease_seconds=settings.delivery_lease_seconds,
        batch_size=settings.dispatch_batch_size,
    )
    channels = Channels(settings)
    service.rules = rules  # for tests and tools that drive the handlers directly
    service.channels = channels

    # Every change in a package's life that affects someone (docs/guide/notifications.md).
    @service.consumer.on_batch(
        PackagePlaced,
        PackageUnplaced,
        PackageHandedBack,
        OfferMade,
        PackageCancelled,
        PackageReopened,
        PackageStarted,
        PackageEnded,
        PackagePaused,
        PackageResumed,
        ChangeOffered,
        PackageChanged,
        ChangeDeclined,
        ChangeWithdrawn,
        PackageHandedOver,
        PackageReviewed,
        FundingRecorded,
        DischargeReferred,
        DischargeFallbackUnavailable,
        DischargeReferralReleased,
        ExceptionRequested,
        ExceptionFirstApproved,
        ExceptionDecided,
    )
    async def on_package_events(uow: UnitOfWork, events: list[Any]) -> None:  # the types above only
        await handlers.notify_all(uow, rules, events)

    service.consumer.subscribe(*topics.CONSUMED_BY["notifications"])
    declare_publishes(
        service,
        topics.CONFIRMATIONS,
        PlacementConfirmed,
        NotificationFailed,
        description="A placement's confirmations recorded for their recipients; a message that could "
        "not be delivered, with the reason (no address). Keyed by package id.",
    )

    @service.on_startup
    async def seal_secrets(svc: Service) -> None:
        """Contacts' webhook secrets stored in clear (before sealing existed) or under an older key, sealed anew."""
        async with svc.pool.acquire() as conn:
            resealed = await reseal_column(
                conn, svc.secrets, "recipients", "kind || '/' || recipient_id", "webhook_secret"
            )
        if resealed:
            log.info("webhook secrets sealed", count=resealed)

    @service.on_startup
    async def seed_contacts(svc: Service) -> None:
        await seed_recipients(svc, settings.seed_channel)

    @service.gauge_refreshers.append
    async def pending(svc: Service) -> None:
        rows = await svc.pool.fetch(
            "SELECT status, count(*) AS n FROM deliveries "
            "WHERE status IN ('pending', 'awaiting_contact') GROUP BY status"
        )
        counts = {r["status"]: r["n"] for r in rows}
        for status in ("pending", "awaiting_contact"):
            metrics.NOTIFICATIONS_PENDING.labels(status).set(counts.get(status, 0))

    @service.in_background
    async def dispatcher(svc: Service) -> None:
        """Sends what the consumer recorded; several dispatchers (or instances) share the work
        through SKIP LOCKED and leases. A database outage ends the loop; the guard restarts it."""
        loop = asyncio.get_running_loop()
        next_expiry = loop.time()
        while not svc.stopping.is_set():
            try:
                expired = 0
                # Messages wait an hour for their recipient's contact: a look once a second will do,
                # where the dispatcher looks for due deliveries five times a second (decision 0163).
                if loop.time() >= next_expiry:
                    async with unit_of_work(svc.pool) as uow:
                        expired = await handlers.expire_awaiting(uow, rules)
                    next_expiry = loop.time() + EXPIRY_LOOK_SECONDS
                sent = await handlers.dispatch_due(svc.pool, rules, channels)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.warning("dispatcher batch failed", error=repr(exc))
                sent = expired = 0
            if not (sent or expired):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(svc.stopping.wait(), timeout=settings.dispatch_poll_seconds)

    app = create_app(
        service,
        title="Notifications",
        description="Placement confirmations and alerts to everyone concerned, by email, GOV.UK Notify, "
        "webhook or the log; contacts and preferences; delivery status per package.",
    )
    app.include_router(api.build_router(service, rules))
    return service, app


async def seed_recipients(service: Service, channel: str) -> int:
    """The synthetic market's contacts (providers, brokers, the brokerage team), where not registered."""
    # A reference folder of its own (a test's, the benchmark's) may leave the contacts out: the default's serve.
    path = reference_dir() / "contacts.yaml"
    seed = yaml.safe_load((path if path.exists() else DEFAULT_DIR / "contacts.yaml").read_text())
    entries = [("brokerage_team", seed["brokerage_team"])] + [("broker", b) for b in seed["brokers"]]
    # The in-house services' teams (decision 0097) are council teams like the brokerage team.
    entries += [("brokerage_team", t) for t in seed.get("in_house_teams", [])]
    entries += [
        (
            "provider",
            {
                "recipient_id": p["provider_id"],
                "name": p["name"],
                "email": seed["provider_email"].format(provider_id=p["provider_id"]),
            },
        )
        for p in load_provider_seed()
    ]
    added = 0
    async with service.pool.acquire() as conn:
        for kind, entry in entries:
            values = {k: v for k, v in entry.items() if k != "recipient_id"} | {"channels": [channel]}
            added += await repo.put_recipient(conn, kind, entry["recipient_id"], values, only_if_new=True)
    log.info("contacts seeded", added=added, channel=channel)
    return added
