"""Brokerage service bootstrap: ``python -m services.brokerage``.

HTTP: the brokerage team's API. Consumes: provider answers (providers.answers) and the provider
registry (providers.registry). Publishes (through its outbox): brokerage.packages.
Background: the offer-window timer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from schemas import topics
from schemas.events import (
    BidSubmitted,
    OfferDeclined,
    OfferMade,
    PackagePlaced,
    PackageRequested,
    PackageUnplaced,
    ProviderUpdated,
)
from schemas.vocabulary import Urgency
from services.brokerage import api, handlers
from services.brokerage import repository as repo
from services.runtime import metrics
from services.runtime.asyncapi import declare_publishes
from services.runtime.db import is_transient
from services.runtime.http import create_app
from services.runtime.logging import get_logger
from services.runtime.outbox import unit_of_work
from services.runtime.reference import load_framework
from services.runtime.service import Service
from services.runtime.settings import ServiceSettings, load


log = get_logger(__name__)


def build(settings: ServiceSettings | None = None) -> tuple[Service, object]:
    settings = settings or load("brokerage")
    service = Service(settings, migrations=Path(__file__).parent / "migrations")
    rules = handlers.BrokerageRules(
        framework=load_framework(),
        windows={
            Urgency.hospital_discharge: dt.timedelta(seconds=settings.offer_window_hospital_discharge_seconds),
            Urgency.reablement_step_down: dt.timedelta(seconds=settings.offer_window_reablement_step_down_seconds),
            Urgency.community: dt.timedelta(seconds=settings.offer_window_community_seconds),
        },
    )

    service.rules = rules  # for tests and tools that drive the handlers directly

    @service.consumer.on(BidSubmitted, OfferDeclined)
    async def on_answer(uow, event):
        await handlers.record_answer(uow, rules, event)

    @service.consumer.on(ProviderUpdated)
    async def on_provider(uow, event):
        await handlers.update_provider(uow, event)

    service.consumer.subscribe(topics.ANSWERS, topics.REGISTRY)
    declare_publishes(service, topics.PACKAGES, PackageRequested, OfferMade, PackagePlaced, PackageUnplaced,
                      description="A package's life: requested, offered per tier, placed or unplaced. Keyed by package id.")

    @service.gauge_refreshers.append
    async def waiting_packages(svc: Service) -> None:
        rows = await svc.pool.fetch(
            """SELECT urgency, status, count(*) AS n, extract(epoch FROM now() - min(requested_at)) AS oldest
                 FROM packages WHERE status IN ('offered', 'unplaced') GROUP BY urgency, status""")
        for urgency in Urgency:
            for status in ("offered", "unplaced"):
                row = next((r for r in rows if r["urgency"] == urgency.value and r["status"] == status), None)
                metrics.PACKAGES_WAITING.labels(urgency.value, status).set(row["n"] if row else 0)
                metrics.OLDEST_WAIT.labels(urgency.value, status).set(float(row["oldest"]) if row else 0)

    @service.in_background
    async def offer_window_timer(svc: Service) -> None:
        """Closes rounds whose window ran out. The deadline is a column, so a restart loses no timer,
        and SKIP LOCKED lets two brokerage instances run this without closing a round twice."""
        while not svc.stopping.is_set():
            try:
                async with unit_of_work(svc.pool) as uow:
                    closed = await handlers.close_due_window(uow, rules)
            except Exception as exc:
                if is_transient(exc):
                    raise  # the database is away: the guard backs off and restarts the timer
                # This package cannot be closed (a bug, or reference data changed under it):
                # look at it again later, and let every other package's window close meanwhile.
                stuck = await svc.pool.fetchval(
                    "SELECT package_id FROM packages WHERE status = 'offered' AND window_closes_at <= now() "
                    "ORDER BY window_closes_at LIMIT 1")
                log.error("offer window could not be closed; retrying in 60 s", package_id=str(stuck), error=repr(exc))
                if stuck:
                    async with unit_of_work(svc.pool) as uow:
                        await repo.postpone_window(uow.conn, stuck, handlers.now() + dt.timedelta(seconds=60))
                continue
            if not closed:
                try:
                    await asyncio.wait_for(svc.stopping.wait(), timeout=settings.timer_poll_seconds)
                except asyncio.TimeoutError:
                    pass

    app = create_app(service, title="Brokerage", description="Home care package requests, offers and awards.")
    app.include_router(api.build_router(service, rules))
    app.include_router(api.reference_router(service, rules))
    return service, app


def main() -> None:
    service, app = build()
    service.run(app)


if __name__ == "__main__":
    main()
