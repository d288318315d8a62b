"""What the providers service does, one function per event; each runs in one unit of work.

- :func:`seed_registry`  start-up: register the framework's providers from reference data
- :func:`answer_offer`   OfferMade -> each offered provider's adapter bids or declines
- :func:`record_award`   PackagePlaced -> the winner's hours committed, other bids released
- :func:`release_bids`   PackageUnplaced -> every bid's held capacity released
- :func:`release_package` PackageCancelled -> bids released, and a placement's hours given back
- :func:`record_hand_back` PackageHandedBack -> hours free again, the hand-back on the provider's record
- :func:`release_reopened` PackageReopened -> a suspended or departed provider's hours free again
- :func:`change_status`  the council suspends, reinstates or records the departure of a provider (HTTP)
"""

from __future__ import annotations

import datetime as dt
import uuid

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
from services.providers import domain
from services.providers import repository as repo
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork
from services.runtime.reference import load_framework

log = get_logger(__name__)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def provider_updated(row, causation=None) -> ProviderUpdated:
    profile = repo.profile_of(row)
    return ProviderUpdated(
        correlation_id=uuid.uuid5(uuid.NAMESPACE_URL, f"provider:{profile.provider_id}"),
        causation_id=causation, revision=row["revision"], profile=profile,
    )


async def seed_registry(uow: UnitOfWork, seed: list[dict]) -> int:
    added = 0
    for entry in seed:
        row = await repo.insert_provider(uow.conn, entry)
        if row is not None:
            await uow.emit(provider_updated(row))
            added += 1
    return added


async def answer_offer(uow: UnitOfWork, event: OfferMade) -> None:
    framework = load_framework()
    zone = framework.zones.get(event.package.zone)
    neighbours = frozenset(zone.adjacent) if zone else frozenset()
    # Providers are locked in a fixed order so two offers answered at once cannot deadlock.
    for provider_id in sorted(set(event.provider_ids)):
        row = await repo.lock_provider(uow.conn, provider_id)
        if row is None:
            log.warning("offer names an unknown provider", provider_id=provider_id)
            continue
        if not await repo.insert_offer(uow.conn, event, provider_id):
            continue  # already received
        rules = repo.rules_of(row)
        if rules.kind != "automatic":
            continue  # webhook and portal adapters answer through the provider API
        answer = domain.automatic_answer(repo.profile_of(row), rules, event.package, event.band_rate,
                                         row["held_hours"], dt.date.today(), neighbouring=neighbours)
        at = now()
        common = dict(correlation_id=event.package_id, causation_id=event.event_id, package_id=event.package_id,
                      offer_round=event.offer_round, provider_id=provider_id, adapter="automatic", answered_at=at)
        if isinstance(answer, domain.Bid):
            await repo.record_bid(uow.conn, package_id=event.package_id, offer_round=event.offer_round,
                                  provider_id=provider_id, hourly_rate=answer.hourly_rate,
                                  hold=event.package.hours_per_week, at=at)
            await uow.emit(BidSubmitted(hourly_rate=answer.hourly_rate, earliest_start=answer.earliest_start, **common))
        else:
            await repo.record_decline(uow.conn, package_id=event.package_id, offer_round=event.offer_round,
                                      provider_id=provider_id, reason=answer.reason.value, text=answer.text, at=at)
            await uow.emit(OfferDeclined(reason=answer.reason, reason_text=answer.text, **common))


async def record_award(uow: UnitOfWork, event: PackagePlaced) -> None:
    for offer in await repo.outstanding_bids(uow.conn, event.package_id):
        await repo.settle_offer(uow.conn, offer, "won" if offer["provider_id"] == event.provider_id else "lost")
    if await repo.is_cancelled(uow.conn, event.package_id):
        log.warning("award of a package already cancelled ignored (a replay?)", package_id=str(event.package_id))
        return
    if not await repo.insert_placement(uow.conn, package_id=event.package_id, provider_id=event.provider_id,
                                       hours=event.hours_per_week, hourly_rate=event.hourly_rate,
                                       start_date=event.start_date, placed_at=event.placed_at):
        return
    row = await repo.commit_hours(uow.conn, event.provider_id, event.hours_per_week)
    await uow.emit(provider_updated(row, causation=event.event_id))


async def release_bids(uow: UnitOfWork, event: PackageUnplaced) -> None:
    for offer in await repo.outstanding_bids(uow.conn, event.package_id):
        await repo.settle_offer(uow.conn, offer, "closed")


async def release_package(uow: UnitOfWork, event: PackageCancelled) -> None:
    await repo.remember_cancelled(uow.conn, event.package_id, event.cancelled_at)
    for offer in await repo.outstanding_bids(uow.conn, event.package_id):
        await repo.settle_offer(uow.conn, offer, "closed")
    await _end_placement(uow, event.package_id, event.cancelled_at, causation=event.event_id)


async def record_hand_back(uow: UnitOfWork, event: PackageHandedBack) -> None:
    """The provider gave the package back: its hours are free again, and the hand-back counts
    against its quality rating for the next 12 months."""
    await _end_placement(uow, event.package_id, event.recorded_at, causation=event.event_id, hand_back=True)


async def release_reopened(uow: UnitOfWork, event: PackageReopened) -> None:
    """The package was taken from a provider suspended or gone: its hours are free again (no
    hand-back on its record - it did not give the package back)."""
    await _end_placement(uow, event.package_id, event.reopened_at, causation=event.event_id)


async def _end_placement(uow: UnitOfWork, package_id: uuid.UUID, at: dt.datetime, *, causation: uuid.UUID,
                         hand_back: bool = False) -> None:
    placement = await repo.cancel_placement(uow.conn, package_id, at)
    if placement is None:
        return  # none, or already ended (a redelivery)
    row = await repo.commit_hours(uow.conn, placement["provider_id"], -placement["hours_per_week"])
    if hand_back:
        row = await repo.count_hand_back(uow.conn, placement["provider_id"])
    await uow.emit(provider_updated(row, causation=causation))


async def change_status(uow: UnitOfWork, provider_id: str, *, status: str, reason: str, decided_by: str) -> ProviderUpdated:
    """The council suspends a provider, reinstates it, or records that it left the framework. The
    brokerage learns it from ProviderUpdated and re-brokers the provider's active packages."""
    row = await repo.lock_provider(uow.conn, provider_id)
    if row is None:
        raise LookupError(f"no provider {provider_id!r}")
    current = repo.profile_of(row).status
    domain.check_status_change(provider_id, current, status)
    row = await repo.set_status(uow.conn, provider_id, status=status, reason=reason, decided_by=decided_by, at=now())
    updated = provider_updated(row)
    await uow.emit(updated)
    log.warning("provider status changed", provider_id=provider_id, status=status, was=current, reason=reason,
                decided_by=decided_by)
    return updated
