"""Brokerage service bootstrap: ``python -m services.brokerage``.

HTTP: the brokerage team's API. Consumes: provider answers (providers.answers) and the provider
registry (providers.registry). Publishes (through its outbox): brokerage.packages.
Background: the timers (offer windows, the unplaced queue's re-offers).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from schemas import topics
from schemas.events import (
    BidSubmitted,
    ChangeAnswered,
    ChangeDeclined,
    ChangeOffered,
    ChangeWithdrawn,
    DischargeFallbackUnavailable,
    DischargeReferralReleased,
    DischargeReferred,
    DischargeRequested,
    ExceptionDecided,
    ExceptionFirstApproved,
    ExceptionRequested,
    FundingRecorded,
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
    PackageReviewed,
    PackageStarted,
    PackageUnplaced,
    ProviderQualityRecorded,
    ProviderUpdated,
    ServiceAgreementRecorded,
)
from schemas.vocabulary import Urgency
from services.brokerage import api, domain, handlers
from services.brokerage import repository as repo
from services.runtime import metrics
from services.runtime.asyncapi import declare_publishes
from services.runtime.db import is_transient
from services.runtime.http import create_app
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork, unit_of_work
from services.runtime.service import Service
from services.runtime.settings import ServiceSettings, load

log = get_logger(__name__)


class BrokerageService(Service):
    """The brokerage process, with the rules its handlers run with (tests and tools drive them directly)."""

    rules: handlers.BrokerageRules


def build(settings: ServiceSettings | None = None) -> tuple[BrokerageService, FastAPI]:
    settings = settings or load("brokerage")
    service = BrokerageService(settings, migrations=Path(__file__).parent / "migrations")
    rules = handlers.BrokerageRules(
        windows={
            Urgency.hospital_discharge: dt.timedelta(seconds=settings.offer_window_hospital_discharge_seconds),
            Urgency.reablement_step_down: dt.timedelta(seconds=settings.offer_window_reablement_step_down_seconds),
            Urgency.community: dt.timedelta(seconds=settings.offer_window_community_seconds),
        },
        reoffer_interval=dt.timedelta(seconds=settings.reoffer_interval_seconds),
        pause_hold=dt.timedelta(seconds=settings.pause_hold_seconds),
        pause_hold_paid=settings.pause_hold_paid,
        date_limits=domain.DateLimits(
            backdate_days=settings.ending_backdate_limit_days, ahead_days=settings.ending_ahead_limit_days
        ),
        change_window=dt.timedelta(seconds=settings.change_window_seconds),
        reviews=domain.ReviewSchedule(
            first_after_days=settings.review_first_after_days,
            interval_months=settings.review_interval_months,
            due_soon_days=settings.review_due_soon_days,
        ),
        discharge=domain.DischargeRules(
            fit_ahead_days=settings.discharge_medically_fit_ahead_days,
            fit_backdate_days=settings.discharge_medically_fit_backdate_days,
            fallback_after=dt.timedelta(seconds=settings.discharge_fallback_after_seconds),
        ),
        sandbox=settings.sandbox,
    )

    service.rules = rules  # for tests and tools that drive the handlers directly

    @service.consumer.on_batch(BidSubmitted, OfferDeclined)
    async def on_answers(uow: UnitOfWork, events: list[Any]) -> None:  # BidSubmitted and OfferDeclined only
        await handlers.record_answers(uow, rules, events)

    @service.consumer.on(ChangeAnswered)
    async def on_change_answer(uow: UnitOfWork, event: ChangeAnswered) -> None:
        await handlers.record_change_answer(uow, rules, event)

    @service.consumer.on(ProviderUpdated)
    async def on_provider(uow: UnitOfWork, event: ProviderUpdated) -> None:
        await handlers.update_provider(uow, event)

    @service.consumer.on(ProviderQualityRecorded)
    async def on_provider_quality(uow: UnitOfWork, event: ProviderQualityRecorded) -> None:
        await handlers.record_provider_quality(uow, event)

    service.consumer.subscribe(*topics.CONSUMED_BY["brokerage"])
    declare_publishes(
        service,
        topics.PACKAGES,
        PackageRequested,
        OfferMade,
        PackagePlaced,
        PackageUnplaced,
        PackageCancelled,
        PackageStarted,
        PackageHandedBack,
        PackageReopened,
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
        DischargeRequested,
        DischargeReferred,
        DischargeFallbackUnavailable,
        DischargeReferralReleased,
        ExceptionRequested,
        ExceptionFirstApproved,
        ExceptionDecided,
        description="A package's life: requested, offered per tier, placed or unplaced, cancelled, started, "
        "paused and resumed, ended, changed (offered to its provider, accepted or declined), reviewed, "
        "funded; a hospital discharge's referrals to the council's in-house services. "
        "Keyed by package id.",
    )

    declare_publishes(
        service,
        topics.SERVICE_AGREEMENTS,
        ServiceAgreementRecorded,
        description="The hand-off to finance: a service agreement record for each placement, start, change, "
        "unpaid pause and resume, ending, cancellation, hand-back and funding change; a correction is a new "
        "version superseding the last. Package ids only. Keyed by package id.",
    )

    @service.gauge_refreshers.append
    async def waiting_packages(svc: Service) -> None:
        rows = await svc.pool.fetch(
            """SELECT urgency, status, count(*) AS n, extract(epoch FROM now() - min(requested_at)) AS oldest
                 FROM packages WHERE status IN ('offered', 'unplaced') GROUP BY urgency, status"""
        )
        for urgency in Urgency:
            for status in ("offered", "unplaced"):
                row = next((r for r in rows if r["urgency"] == urgency.value and r["status"] == status), None)
                metrics.PACKAGES_WAITING.labels(urgency.value, status).set(row["n"] if row else 0)
                metrics.OLDEST_WAIT.labels(urgency.value, status).set(float(row["oldest"]) if row else 0)

    @service.in_background
    async def timers(svc: Service) -> None:
        """Offer windows that ran out, unplaced packages due a re-offer, packages of a provider
        suspended or gone, to re-broker, and paused packages whose hold ran out, to end. Deadlines are columns,
        so a restart loses none; each is handled in a transaction of its own with SKIP LOCKED, so
        two brokerage instances fire none twice and one bad package holds up no other."""
        jobs = [
            (handlers.close_due_window, repo.WINDOWS),
            (handlers.reoffer_due, repo.REOFFERS),
            (handlers.rebroker_due, repo.REBROKERING),
            (handlers.end_due_holds, repo.HOLDS),
            (handlers.close_due_change_window, repo.CHANGE_WINDOWS),
            (handlers.discharge_fallback_due, repo.DISCHARGE_FALLBACKS),
        ]
        while not svc.stopping.is_set():
            did_something = False
            due = await repo.due_timers(svc.pool, [timer for _, timer in jobs], handlers.now())
            for (job, timer), is_due in zip(jobs, due, strict=True):
                if not is_due:
                    continue
                try:
                    async with unit_of_work(svc.pool) as uow:
                        did_something |= await job(uow, rules) is not None
                except Exception as exc:
                    if is_transient(exc):
                        raise  # the database is away: the guard backs off and restarts the timers
                    # This package cannot be handled (a bug, or reference data changed under it):
                    # look at it again in a minute, and let every other package go on meanwhile.
                    stuck = await repo.put_off(svc.pool, timer, 60)
                    log.error(
                        "timer could not handle a package; retrying it in 60 s",
                        job=job.__name__,
                        package_id=str(stuck),
                        error=repr(exc),
                    )
            if not did_something:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(svc.stopping.wait(), timeout=settings.timer_poll_seconds)

    app = create_app(service, title="Brokerage", description="Home care package requests, offers and awards.")
    app.include_router(api.build_router(service, rules))
    app.include_router(api.reviews_router(service, rules))
    app.include_router(api.finance_router(service, rules))
    app.include_router(api.reference_router(service, rules))
    app.include_router(api.disclosures_router(service))
    app.include_router(api.internal_router(service))
    app.include_router(api.sandbox_router(service, rules))
    return service, app
