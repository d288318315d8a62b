"""What the brokerage does, one function per command or event; each runs in one unit of work.

- :func:`request_package`  a broker's request (HTTP) -> PackageRequested + the first OfferMade
- :func:`record_answer`    BidSubmitted / OfferDeclined -> maybe close the round early
- :func:`close_due_window`  the window timer -> close a round whose window has run out
- :func:`close_round`      award (PackagePlaced), or offer the next tier, or PackageUnplaced
- :func:`update_provider`  ProviderUpdated -> the brokerage's view of the registry
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from schemas.events import (
    BidSubmitted,
    OfferDeclined,
    OfferMade,
    PackagePlaced,
    PackageRequested,
    PackageSpec,
    PackageUnplaced,
    ProviderUpdated,
)
from schemas.vocabulary import Tier, Urgency
from services.brokerage import domain
from services.brokerage import repository as repo
from services.runtime.consumer import Rejected
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork
from services.runtime.reference import Framework

log = get_logger(__name__)


@dataclass(frozen=True)
class BrokerageRules:
    """The configurable parts of the framework's rules."""

    framework: Framework
    windows: dict[Urgency, dt.timedelta]
    quality_weights: domain.QualityWeights = domain.QualityWeights()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def request_package(uow: UnitOfWork, rules: BrokerageRules, *, spec: PackageSpec, person: dict, requested_by: str,
                          package_id: uuid.UUID | None = None, idempotency: tuple[str, str] | None = None) -> uuid.UUID:
    """Store the request and offer it to the first tier. ``idempotency`` is (key, request hash):
    a second request with the key fails on the unique key, and the caller returns the first."""
    package_id = package_id or uuid.uuid4()
    at = now()
    card = rules.framework.rate_card_on(at.date())
    policy = rules.framework.policy_on(spec.zone, at.date())
    await repo.insert_package(uow.conn, package_id=package_id, spec=spec, requested_by=requested_by, policy=policy,
                              rate_card=card.version, band_rate=card.rates[spec.band], requested_at=at, person=person,
                              idempotency=idempotency)
    requested = PackageRequested(correlation_id=package_id, package_id=package_id, package=spec, requested_at=at)
    await repo.add_timeline(uow.conn, package_id, "requested", at, requested_by=requested_by, policy=policy, rate_card=card.version)
    await uow.emit(requested)
    package = await repo.lock_package(uow.conn, package_id)
    await _offer_next_tier(uow, rules, package, after=None, causation=requested.event_id)
    return package_id


async def record_answer(uow: UnitOfWork, rules: BrokerageRules, event: BidSubmitted | OfferDeclined) -> None:
    package = await repo.lock_package(uow.conn, event.package_id)
    if package is None or not await repo.round_exists(uow.conn, event.package_id, event.offer_round):
        raise Rejected(f"answer for unknown package/round {event.package_id}/{event.offer_round}")
    # An answer after its round closed is kept (it is part of the record) but changes nothing.
    late = package["status"] != "offered" or package["current_round"] != event.offer_round
    common = dict(package_id=event.package_id, offer_round=event.offer_round, provider_id=event.provider_id,
                  adapter=event.adapter, answered_at=event.answered_at, event_id=event.event_id, late=late)
    if isinstance(event, BidSubmitted):
        fresh = await repo.insert_answer(uow.conn, kind="bid", hourly_rate=event.hourly_rate,
                                         earliest_start=event.earliest_start, **common)
    else:
        fresh = await repo.insert_answer(uow.conn, kind="decline", reason=event.reason.value,
                                         reason_text=event.reason_text, **common)
    if not fresh or late:
        return
    state, quality = await repo.round_state(uow.conn, event.package_id, event.offer_round)
    if event.provider_id not in state.offered:
        return
    if domain.outcome_settled(state, quality, package["band_rate"]):
        await close_round(uow, rules, package, why="outcome settled", causation=event.event_id)


async def close_due_window(uow: UnitOfWork, rules: BrokerageRules) -> uuid.UUID | None:
    """Close one round whose window has run out (the window timer calls this in a loop, one
    transaction per package, so one package that cannot be closed holds up no other)."""
    package_id = await repo.next_due_window(uow.conn, now())
    if package_id is None:
        return None
    package = await repo.lock_package(uow.conn, package_id)
    await close_round(uow, rules, package, why="window closed", causation=None)
    return package_id


async def close_round(uow: UnitOfWork, rules: BrokerageRules, package, *, why: str, causation: uuid.UUID | None) -> None:
    package_id = package["package_id"]
    offer_round = package["current_round"]
    state, quality = await repo.round_state(uow.conn, package_id, offer_round)
    ranked = domain.rank_bids(state.answers.values(), quality, package["band_rate"])
    spec = repo.spec_of(package)
    # Eligibility is checked again at the moment of award: a provider suspended, or whose
    # capacity went, since the offer cannot win.
    current = await repo.providers_serving(uow.conn, spec.zone)
    still_eligible = {p.provider_id for p in domain.screen(spec, current).eligible}
    winner = domain.choose_winner(ranked, still_eligible)
    at = now()
    if winner is not None:
        await repo.close_round(uow.conn, package_id, offer_round, f"placed with {winner.answer.provider_id}")
        await repo.mark_placed(uow.conn, package_id, provider_id=winner.answer.provider_id,
                               hourly_rate=winner.answer.hourly_rate, placed_at=at)
        await repo.add_timeline(uow.conn, package_id, "placed", at, provider_id=winner.answer.provider_id,
                                rank=winner.rank, why=why, hourly_rate=str(winner.answer.hourly_rate))
        all_offered = await uow.conn.fetchval(
            "SELECT array_agg(DISTINCT p) FROM offer_rounds, unnest(provider_ids) p WHERE package_id = $1", package_id
        )
        await uow.emit(PackagePlaced(
            correlation_id=package_id, causation_id=causation, package_id=package_id,
            provider_id=winner.answer.provider_id, offer_round=offer_round, tier=Tier(package["current_tier"]),
            hourly_rate=winner.answer.hourly_rate, hours_per_week=spec.hours_per_week,
            start_date=max(spec.start_date, winner.answer.earliest_start), zone=spec.zone, band=spec.band,
            urgency=spec.urgency, rate_card=package["rate_card"], requested_by=package["requested_by"],
            losing_provider_ids=sorted(p for p in (all_offered or []) if p != winner.answer.provider_id), placed_at=at,
        ))
        return
    outcome = "no acceptable bid" if ranked else "no bid"
    await repo.close_round(uow.conn, package_id, offer_round, outcome)
    await repo.add_timeline(uow.conn, package_id, "round closed", at, offer_round=offer_round, outcome=outcome, why=why)
    await _offer_next_tier(uow, rules, package, after=Tier(package["current_tier"]), causation=causation)


async def _offer_next_tier(uow: UnitOfWork, rules: BrokerageRules, package, *, after: Tier | None,
                           causation: uuid.UUID | None) -> None:
    package_id = package["package_id"]
    spec = repo.spec_of(package)
    zone_has_prime = spec.zone not in rules.framework.no_prime_zones
    ladder = domain.tier_ladder(package["policy"], zone_has_prime=zone_has_prime)
    providers = await repo.providers_serving(uow.conn, spec.zone)
    screening = domain.screen(spec, providers)
    # Providers already offered this package in an earlier round are not offered it again.
    earlier = set(await uow.conn.fetchval(
        "SELECT coalesce(array_agg(p), '{}') FROM offer_rounds, unnest(provider_ids) p WHERE package_id = $1", package_id
    ))
    fresh = [p for p in screening.eligible if p.provider_id not in earlier]
    offer = domain.next_offer(ladder, after, fresh)
    at = now()
    if offer is None:
        reason = "no eligible provider" if not screening.eligible else "no acceptable bid on any tier"
        await repo.mark_unplaced(uow.conn, package_id, unplaced_at=at)
        await repo.add_timeline(uow.conn, package_id, "unplaced", at, reason=reason, excluded=screening.excluded)
        await uow.emit(PackageUnplaced(
            correlation_id=package_id, causation_id=causation, package_id=package_id, zone=spec.zone, band=spec.band,
            urgency=spec.urgency, hours_per_week=spec.hours_per_week, reason=reason,
            requested_by=package["requested_by"], unplaced_at=at,
        ))
        return
    tier, offered = offer
    offer_round = package["current_round"] + 1
    closes = at + rules.windows[spec.urgency]
    quality = {p.provider_id: domain.quality_score(p, rules.quality_weights) for p in offered}
    ids = [p.provider_id for p in offered]
    await repo.open_round(uow.conn, package_id=package_id, offer_round=offer_round, tier=tier.value, provider_ids=ids,
                          excluded=screening.excluded, quality=quality, opened_at=at, window_closes_at=closes)
    await repo.add_timeline(uow.conn, package_id, "offered", at, offer_round=offer_round, tier=tier.value,
                            providers=ids, window_closes_at=closes.isoformat())
    await uow.emit(OfferMade(
        correlation_id=package_id, causation_id=causation, package_id=package_id, offer_round=offer_round, tier=tier,
        provider_ids=ids, package=spec, band_rate=package["band_rate"], window_closes_at=closes,
    ))


async def update_provider(uow: UnitOfWork, event: ProviderUpdated) -> None:
    await repo.upsert_provider(uow.conn, event.profile, event.revision)

