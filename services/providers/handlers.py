"""What the providers service does, one function per event; each runs in one unit of work.

- :func:`seed_registry`  start-up: register the framework's providers from reference data
- :func:`answer_offer`   OfferMade -> each offered provider's adapter bids or declines
- :func:`record_award`   PackagePlaced -> a new live placement, the winner's hours committed, other bids released
- :func:`release_bids`   PackageUnplaced -> every bid's held capacity released
- on every offer that closes (a new round, an award, unplaced, cancelled): one notice per offer -
  won, lost with its bid's rank, or closed with the reason - listed under GET /me/notices and
  delivered to a webhook adapter; the offer's pending delivery withdrawn (:func:`_tell_closed`,
  decision record 0093)
- :func:`release_package` PackageCancelled -> bids released, and the live placement ended (hours given back)
- :func:`record_hand_back` PackageHandedBack -> placement ended, hours free again, the hand-back on its record
- :func:`release_reopened` PackageReopened -> a suspended or departed provider's placement ended, hours free
- :func:`record_ending`   PackageEnded -> the placement ended and its hours released on the effective date
  (at once if that is today or past, else by :func:`release_due_endings` when the UK date comes)
- :func:`record_pause` / :func:`record_resume`  PackagePaused / PackageResumed -> the pause on the live
  placement; its hours stay committed through the hold (decision record 0078)
- :func:`answer_change_offer` ChangeOffered -> the holding provider's adapter accepts or declines (or,
  webhook and portal, answers later through :func:`answer_change_through_api`); :func:`record_change`
  PackageChanged -> the live placement's hours and the committed hours move by the difference;
  :func:`close_change_offer` ChangeDeclined -> the offer closed (decision record 0082)
  :func:`withdraw_change_offer` ChangeWithdrawn -> the offer closed, its webhook delivery withdrawn

A package has one placement per award (keyed by the award's offer round), at most one of them
live (``ended_at`` NULL): the live one is who holds the package, whose hours are committed, and
who may read the person's details (docs/decisions/0037-a-placement-per-award.md).
- :func:`change_status`  the council suspends, reinstates or records the departure of a provider (HTTP)

Commands from the provider API (a provider acting for itself, or the brokerage team):

- :func:`answer_through_api`  a webhook or portal adapter's bid or decline
- :func:`update_own_profile`  a provider changes its capacity or call times
- :func:`request_coverage_change` / :func:`decide_coverage_change`  zones/bands, approved by the brokerage team
- :func:`set_adapter`, :func:`issue_credential`, :func:`revoke_credentials`  the brokerage team's registry work
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from schemas.adapters import (
    BidRequest,
    ChangeNotice,
    DeclineRequest,
    OfferClosedNotice,
    OfferClosedReason,
    OfferNotice,
    OfferOutcome,
    TestOfferNotice,
)
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
    PackageSpec,
    PackageStarted,
    PackageUnplaced,
    ProviderQualityRecorded,
    ProviderUpdated,
    QualityRegister,
)
from schemas.vocabulary import ComplaintTheme, DeclineReason, QualityChange, RiskReason
from services.providers import domain
from services.providers import repository as repo
from services.runtime import clock, quality
from services.runtime.db import Connection, fetch_one
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork
from services.runtime.reference import load_framework, load_joining
from services.runtime.retry import retry_delay
from services.runtime.sealing import SecretBox
from services.runtime.settings import ServiceSettings
from services.runtime.signing import signed_headers

log = get_logger(__name__)


def now() -> dt.datetime:
    """The platform's clock (UTC; settable in tests): services.runtime.clock."""
    return clock.now()


def provider_updated(row: asyncpg.Record, causation: uuid.UUID | None = None) -> ProviderUpdated:
    profile = repo.profile_of(row)
    return ProviderUpdated(
        correlation_id=uuid.uuid5(uuid.NAMESPACE_URL, f"provider:{profile.provider_id}"),
        causation_id=causation,
        revision=row["revision"],
        profile=profile,
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
    # The offered providers are locked with the package's earlier ones, in the service's lock order;
    # a new round means the earlier ones are over: what was left unanswered there is closed.
    locked, closed = await repo.lock_and_close(
        uow.conn, event.package_id, also=event.provider_ids, before_round=event.offer_round
    )
    rows = {p: row for p, row in locked.items() if p in event.provider_ids}
    for provider_id in sorted(set(event.provider_ids) - rows.keys()):
        log.warning("offer names an unknown provider", provider_id=provider_id)
    at = now()
    today = clock.uk_date(at)  # an earliest start is a UK date
    answers: dict[str, domain.Bid | domain.Decline | None] = {}
    for provider_id, row in rows.items():
        rules = repo.rules_of(row)
        # Webhook and portal adapters answer later, through the provider API.
        answers[provider_id] = (
            None
            if rules.kind != "automatic"
            else domain.automatic_answer(
                repo.profile_of(row),
                rules,
                event.package,
                event.band_rate,
                row["held_hours"],
                today,
                neighbouring=neighbours,
            )
        )
    hours = event.package.hours_per_week
    fresh = await repo.insert_offers(uow.conn, event, answers, hours=hours, at=at)  # not those already received
    for provider_id in sorted(fresh):
        rules, answer = repo.rules_of(rows[provider_id]), answers[provider_id]
        if rules.kind == "webhook" and rules.webhook_url:
            # Sent by the delivery loop from this row, committed with the offer itself.
            notice = offer_notice(event, provider_id)
            await repo.insert_delivery(
                uow.conn,
                delivery_id=uuid.uuid4(),
                provider_id=provider_id,
                event=event,
                url=rules.webhook_url,
                body=notice.model_dump_json(),
            )
        common = dict(
            correlation_id=event.package_id,
            causation_id=event.event_id,
            package_id=event.package_id,
            offer_round=event.offer_round,
            provider_id=provider_id,
            adapter="automatic",
            answered_at=at,
        )
        if isinstance(answer, domain.Bid):
            await uow.emit(BidSubmitted(hourly_rate=answer.hourly_rate, earliest_start=answer.earliest_start, **common))
        elif isinstance(answer, domain.Decline):
            # The decline's words stay in the offers table (providers' own record), never on the event.
            await uow.emit(OfferDeclined(reason=answer.reason, **common))
    # Each provider whose offer of an earlier round was closed is told how (the window ran out, or
    # the round closed early: decision 0093).
    await _tell_closed(
        uow,
        event.package_id,
        [
            Closure(
                r["provider_id"],
                r["offer_round"],
                "closed",
                "window_ended" if event.occurred_at >= r["window_closes_at"] else "round_closed_early",
            )
            for r in closed
        ],
        locked,
        at=event.occurred_at,
    )


async def record_request(uow: UnitOfWork, event: PackageRequested) -> None:
    """A package the brokerage requested becomes one a request may name (a safeguarding concern's
    ``subject.package_id``, decision 0130): its id and when, nothing else. Written with the
    batch's other rows at its end: nothing reads it in the same transaction."""
    uow.defer(repo.KNOWN_PACKAGE_ROWS, (event.package_id, event.requested_at))


async def record_award(uow: UnitOfWork, event: PackagePlaced) -> None:
    """The award becomes the package's live placement and commits the winner's hours.

    An award older than the live placement (a dead letter replayed late) changes nothing; a newer
    one whose predecessor is still live (the event that ended it was dead-lettered) ends that one
    first - the brokerage decides who holds a package, and here it has moved on."""
    locked, closed = await repo.lock_and_close(uow.conn, event.package_id, also=[event.provider_id])
    settled = await repo.settle_award(uow.conn, event.package_id, event.provider_id)
    ranks = {b.provider_id: b.rank for b in event.bid_ranks}
    await _tell_closed(
        uow,
        event.package_id,
        [Closure(r["provider_id"], r["offer_round"], "closed", "placed_elsewhere") for r in closed]
        + [
            Closure(r["provider_id"], r["offer_round"], "won", "placed_with_you")
            if r["status"] == "won"
            else Closure(
                r["provider_id"],
                r["offer_round"],
                "lost",
                "placed_elsewhere",
                rank=ranks.get(r["provider_id"]),
                ranked_bids=len(ranks) if r["provider_id"] in ranks else None,
            )
            for r in settled.bids
        ],
        locked,
        at=event.placed_at,
    )
    live = settled.live
    if settled.cancelled:
        log.warning("award of a package already cancelled ignored (a replay?)", package_id=str(event.package_id))
        return
    if live is not None and live["offer_round"] >= event.offer_round:
        if live["offer_round"] > event.offer_round:
            log.warning("an award older than the live placement ignored", package_id=str(event.package_id))
        return
    if live is not None:
        log.warning(
            "a newer award replaces a placement whose end never arrived",
            package_id=str(event.package_id),
            provider_id=live["provider_id"],
        )
        await _end_placement(uow, event.package_id, event.placed_at, causation=event.event_id, why="replaced")
    row = await repo.insert_placement(
        uow.conn,
        package_id=event.package_id,
        offer_round=event.offer_round,
        provider_id=event.provider_id,
        hours=event.hours_per_week,
        hourly_rate=event.hourly_rate,
        start_date=event.start_date,
        placed_at=event.placed_at,
    )
    if row is None:
        return  # this award's placement exists already, and was ended since (a replay)
    await uow.emit(provider_updated(row, causation=event.event_id))


async def release_bids(uow: UnitOfWork, event: PackageUnplaced) -> None:
    """No award: open offers closed, bids released, each provider told (``package_unplaced``)."""
    locked = await repo.lock_package_providers(uow.conn, event.package_id)
    await _close_all(uow, event.package_id, locked, reason="package_unplaced", at=event.unplaced_at)


async def release_package(uow: UnitOfWork, event: PackageCancelled) -> None:
    """The package was cancelled: offers closed, bids released, the placement ended and its hours
    given back - and so are those of a provider working a hand-back's notice on it, which stops
    (decision 0159)."""
    locked = await repo.lock_package_providers(uow.conn, event.package_id)
    await _release_held(uow, event.package_id, event.cancelled_at, causation=event.event_id)
    await repo.remember_cancelled(uow.conn, event.package_id, event.cancelled_at)
    await _close_all(uow, event.package_id, locked, reason="package_cancelled", at=event.cancelled_at)
    await _end_placement(uow, event.package_id, event.cancelled_at, causation=event.event_id, why="cancelled")


# ---- offer lifecycle notices (decision record 0093) ---------------------------------------------

NOTICE_DELIVERY_WINDOW = dt.timedelta(hours=24)  # a closing notice is retried for up to this long


@dataclass(frozen=True)
class Closure:
    """An offer that closed for a provider, and how (schemas.adapters.OfferClosedNotice)."""

    provider_id: str
    offer_round: int
    outcome: OfferOutcome
    reason: OfferClosedReason
    rank: int | None = None
    ranked_bids: int | None = None


def closed_notice(package_id: uuid.UUID, closure: Closure, at: dt.datetime) -> OfferClosedNotice:
    """The notice of one closed offer; its id is fixed by the offer (a redelivery makes the same)."""
    return OfferClosedNotice(
        notice_id=uuid.uuid5(
            uuid.NAMESPACE_URL, f"offer-closed:{package_id}/{closure.offer_round}/{closure.provider_id}"
        ),
        package_id=package_id,
        offer_round=closure.offer_round,
        provider_id=closure.provider_id,
        outcome=closure.outcome,
        reason=closure.reason,
        rank=closure.rank,
        ranked_bids=closure.ranked_bids,
        closed_at=at,
    )


async def _tell_closed(
    uow: UnitOfWork,
    package_id: uuid.UUID,
    closures: list[Closure],
    providers: dict[str, asyncpg.Record],
    *,
    at: dt.datetime,
) -> None:
    """Record each closed offer's notice (listed under GET /me/notices), queue it for a webhook
    adapter (signed, delivered like an offer), and withdraw the package's offer deliveries that
    can no longer be answered - a closed offer is never delivered again. Same transaction as the
    offers' change of status; a notice is recorded once per offer.

    With nothing closed, nothing is done: an offer's pending delivery is withdrawn in the
    transaction that changes the offer's status (here, or :func:`answer_through_api`), so none
    is left to withdraw when no status changed - a round trip saved on every first-round offer."""
    if not closures:
        return
    notices = [closed_notice(package_id, closure, at) for closure in closures]
    recorded = await repo.record_closures(uow.conn, package_id, notices)  # and the offers' deliveries withdrawn
    for closure, notice in zip(closures, notices, strict=True):
        if notice.notice_id not in recorded:
            continue
        recorded.discard(notice.notice_id)  # one delivery a notice, were an offer listed twice
        row = providers.get(closure.provider_id)
        rules = repo.rules_of(row) if row is not None else None
        if rules is not None and rules.kind == "webhook" and rules.webhook_url:
            await repo.insert_notice_delivery(
                uow.conn,
                delivery_id=uuid.uuid4(),
                notice=notice,
                url=rules.webhook_url,
                give_up_at=max(at, now()) + NOTICE_DELIVERY_WINDOW,
            )


async def _close_all(
    uow: UnitOfWork,
    package_id: uuid.UUID,
    providers: dict[str, asyncpg.Record],
    *,
    reason: OfferClosedReason,
    at: dt.datetime,
) -> None:
    """No award (unplaced, cancelled): open offers closed and bids released, every one told why."""
    closed = await repo.close_unanswered(uow.conn, package_id)
    settled = await repo.settle_bids(uow.conn, package_id)
    closures = [Closure(r["provider_id"], r["offer_round"], "closed", reason) for r in [*closed, *settled]]
    await _tell_closed(uow, package_id, closures, providers, at=at)


async def record_hand_back(uow: UnitOfWork, event: PackageHandedBack) -> None:
    """The provider gave the package back: the package is no longer its (it is brokered again), and
    the hand-back counts against its quality rating for the next 12 months. It keeps visiting until
    the notice's last day (``notice_ends_on``, a UK date, paid to it: decision 0158), so its hours
    stay committed until then and are released the day after by the endings timer
    (:func:`release_due_endings`; decision 0159) - at once when the notice has already run out."""
    today = clock.uk_date(now())
    # A notice ending before the placement's start is never worked: end_placement holds nothing then.
    await _end_placement(
        uow,
        event.package_id,
        event.recorded_at,
        causation=event.event_id,
        why="handed_back",
        provider_id=event.provider_id,
        hold_until=event.notice_ends_on if event.notice_ends_on >= today else None,
    )


async def release_reopened(uow: UnitOfWork, event: PackageReopened) -> None:
    """The package was taken from a provider suspended or gone: its hours are free again (no
    hand-back on its record - it did not give the package back)."""
    await _end_placement(
        uow,
        event.package_id,
        event.reopened_at,
        causation=event.event_id,
        why="reopened",
        provider_id=event.provider_id,
    )


async def record_ending(uow: UnitOfWork, event: PackageEnded) -> None:
    """The package ended (died, moved into a care home, ...): the provider's hours are released on
    the effective date, a UK date - now if it has come, else the placement keeps them until
    :func:`release_due_endings` finds the date come. A redelivery changes nothing."""
    await repo.lock_package_providers(uow.conn, event.package_id, also=[event.provider_id])
    # A provider still working its notice after a hand-back stops visiting when the package ends too.
    await repo.shorten_held_hours(uow.conn, event.package_id, event.effective_date - dt.timedelta(days=1))
    if event.effective_date <= clock.uk_date(now()):
        await _end_placement(
            uow, event.package_id, event.ended_at, causation=event.event_id, why="ended", provider_id=event.provider_id
        )
        return
    await repo.schedule_ending(
        uow.conn, event.package_id, event.provider_id, ends_on=event.effective_date, reason=event.reason.value
    )


async def release_due_endings(uow: UnitOfWork) -> uuid.UUID | None:
    """The endings timer: release one placement whose ending's date has come, or the hours held
    through a hand-back's notice that has ended (one per transaction).
    The providers are locked first, in the service's lock order; two instances racing for the same
    placement end it once (the second finds it ended under the same locks)."""
    today = clock.uk_date(now())
    due = await repo.due_ending(uow.conn, today)
    if due is not None:
        package_id, provider_id = due
        await _end_placement(uow, package_id, now(), causation=None, why="ended", provider_id=provider_id)
        return package_id
    held = await repo.due_held_hours(uow.conn, today)
    if held is None:
        return None
    package_id, provider_id = held
    await repo.lock_package_providers(uow.conn, package_id, also=[provider_id])
    # Another instance may have released them under the same locks: then nothing is.
    await _release_held(uow, package_id, now(), provider_id=provider_id, ended_before=today)
    return package_id


async def _release_held(
    uow: UnitOfWork,
    package_id: uuid.UUID,
    at: dt.datetime,
    *,
    provider_id: str | None = None,
    ended_before: dt.date | None = None,
    causation: uuid.UUID | None = None,
) -> None:
    """Give back the hours held through a notice on the package (:func:`repo.release_held_hours`
    says which), each provider's new hours published (ProviderUpdated). Providers locked first."""
    for held in await repo.release_held_hours(
        uow.conn, package_id, at=at, provider_id=provider_id, ended_before=ended_before
    ):
        row = await repo.commit_hours(uow.conn, held["provider_id"], -held["hours_per_week"])
        await uow.emit(provider_updated(row, causation=causation))


async def record_pause(uow: UnitOfWork, event: PackagePaused) -> None:
    """The package is paused (hospital, respite): the provider keeps it, and its hours stay committed
    through the hold; the pause, the hold's end and whether it is paid go on the placement."""
    await repo.lock_package_providers(uow.conn, event.package_id, also=[event.provider_id])
    if not await repo.record_pause(
        uow.conn,
        event.package_id,
        event.provider_id,
        paused_on=event.paused_on,
        reason=event.reason.value,
        hold_expires_at=event.hold_expires_at,
        paid=event.paid_during_hold,
    ):
        log.info("pause of no live, running placement ignored (a redelivery?)", package_id=str(event.package_id))


async def record_resume(uow: UnitOfWork, event: PackageResumed) -> None:
    """The package runs again with the same provider: the pause is cleared from the placement."""
    await repo.lock_package_providers(uow.conn, event.package_id, also=[event.provider_id])
    if not await repo.record_resume(uow.conn, event.package_id, event.provider_id):
        log.info("resume of no paused placement ignored (a redelivery?)", package_id=str(event.package_id))


# ---- changes to a running package (decision record 0082) -----------------------------------------


async def answer_change_offer(uow: UnitOfWork, event: ChangeOffered) -> None:
    """The provider holding the package is offered a change. Its automatic adapter answers at once by
    its rules (:func:`domain.automatic_change_answer`); a webhook or portal adapter answers through
    the provider API before the window closes (unanswered, the brokerage's window timer treats it as
    declined). An offer to a provider that does not hold the package (a replay after a re-brokering)
    is recorded and left unanswered. Providers locked first (decision 0077)."""
    locked = await repo.lock_package_providers(uow.conn, event.package_id, also=[event.provider_id])
    row = locked.get(event.provider_id)
    if row is None:
        log.warning("change offered to an unknown provider", provider_id=event.provider_id)
        return
    at = now()
    if not await repo.insert_change_offer(
        uow.conn,
        change_id=event.change_id,
        package_id=event.package_id,
        provider_id=event.provider_id,
        spec=event.package,
        previous_hours=event.previous_hours_per_week,
        effective_date=event.effective_date,
        window_closes_at=event.window_closes_at,
        at=at,
    ):
        return  # offered before: a redelivery
    live = await repo.live_placement(uow.conn, event.package_id)
    if live is None or live["provider_id"] != event.provider_id:
        log.warning("change offered to a provider not holding the package", change_id=str(event.change_id))
        return
    rules = repo.rules_of(row)
    if rules.kind == "webhook" and rules.webhook_url:
        # POSTed by the delivery loop, committed with the change offer itself (as offers are).
        await repo.insert_change_delivery(
            uow.conn,
            delivery_id=uuid.uuid4(),
            provider_id=event.provider_id,
            package_id=event.package_id,
            change_id=event.change_id,
            url=rules.webhook_url,
            body=change_notice(event).model_dump_json(),
            give_up_at=event.window_closes_at,
        )
    if rules.kind != "automatic":
        return  # answered through the provider API (GET /me/package-changes)
    zone = load_framework().zones.get(event.package.zone)
    decline = domain.automatic_change_answer(
        repo.profile_of(row),
        rules,
        event.package,
        event.previous_hours_per_week,
        row["held_hours"],
        neighbouring=frozenset(zone.adjacent) if zone else frozenset(),
    )
    extra = event.package.hours_per_week - event.previous_hours_per_week
    await _answer_change(
        uow, event.change_id, event.package_id, event.provider_id, "automatic", decline, at, extra=extra
    )


def change_notice(event: ChangeOffered) -> ChangeNotice:
    """The change as the provider's system sees it (POSTed to a webhook adapter)."""
    base = f"/me/package-changes/{event.change_id}"
    return ChangeNotice(
        change_id=event.change_id,
        package_id=event.package_id,
        provider_id=event.provider_id,
        package=event.package,
        previous_hours_per_week=event.previous_hours_per_week,
        effective_date=event.effective_date,
        window_closes_at=event.window_closes_at,
        answer_with={"accept": f"{base}/accept", "decline": f"{base}/decline"},
    )


async def _answer_change(
    uow: UnitOfWork,
    change_id: uuid.UUID,
    package_id: uuid.UUID,
    provider_id: str,
    adapter: str,
    decline: domain.Decline | None,
    at: dt.datetime,
    *,
    extra: Decimal,
) -> None:
    """Record a change's answer and publish it (ChangeAnswered). Accepted, an increase's ``extra``
    hours (carer hours a week) are held on the provider until the brokerage applies or withdraws the
    change (decision 0160): a second increase answered meanwhile sees them taken."""
    await repo.answer_change_offer(
        uow.conn,
        change_id,
        accepted=decline is None,
        adapter=adapter,
        at=at,
        reason=decline.reason.value if decline else None,
        text=decline.text if decline else None,
        hold=max(extra, Decimal(0)) if decline is None else Decimal(0),
    )
    await uow.emit(
        ChangeAnswered(
            correlation_id=package_id,
            package_id=package_id,
            change_id=change_id,
            provider_id=provider_id,
            accepted=decline is None,
            reason=decline.reason if decline else None,
            adapter=adapter,
            answered_at=at,
        )
    )


async def record_change(uow: UnitOfWork, event: PackageChanged) -> None:
    """The brokerage changed the package (its provider accepted): the live placement's hours become
    the new ones and the provider's committed hours move by the difference - once (the change offer
    is settled in the same transaction; a redelivery finds it settled)."""
    await repo.lock_package_providers(uow.conn, event.package_id, also=[event.provider_id])
    # Settling gives back what the accepted increase held; the hours are committed below instead.
    settled = await repo.settle_change_offer(uow.conn, event.change_id, "applied")
    offered = await repo.lock_change_offer(uow.conn, event.change_id)
    if offered is not None and settled is None:
        return  # applied before: a redelivery
    before = await repo.change_placement_hours(uow.conn, event.package_id, event.provider_id, event.hours_per_week)
    if before is None:
        await repo.close_ignored_change(uow.conn, event.change_id)  # not shown as the package's spec
        log.warning("change of a package the provider no longer holds ignored", change_id=str(event.change_id))
        return
    if before["before"] != event.previous_hours_per_week:
        # Not the hours the change was made for: put them back and leave the record alone.
        await repo.change_placement_hours(uow.conn, event.package_id, event.provider_id, before["before"])
        await repo.close_ignored_change(uow.conn, event.change_id)
        log.warning("change for other hours than the placement's ignored", change_id=str(event.change_id))
        return
    row = await repo.commit_hours(uow.conn, event.provider_id, event.hours_per_week - event.previous_hours_per_week)
    await uow.emit(provider_updated(row, causation=event.event_id))


async def close_change_offer(uow: UnitOfWork, event: ChangeDeclined) -> None:
    """Declined or unanswered: the offer is closed; the provider carries on at the old hours until a
    new provider's placement replaces its own (PackagePlaced, :func:`record_award`)."""
    await repo.lock_package_providers(uow.conn, event.package_id, also=[event.provider_id])
    await repo.settle_change_offer(uow.conn, event.change_id, "closed")


async def withdraw_change_offer(uow: UnitOfWork, event: ChangeWithdrawn) -> None:
    """The brokerage withdrew the change (the package was paused, ended, handed back or re-brokered
    meanwhile): the offer is closed - no longer listed as open, its answers refused (409) - and its
    pending webhook delivery withdrawn. The provider's committed hours stay as they were; those an
    accepted increase held are free again (decision 0160)."""
    await repo.lock_package_providers(uow.conn, event.package_id, also=[event.provider_id])
    if await repo.settle_change_offer(uow.conn, event.change_id, "closed") is None:
        log.info("withdrawal of a change settled before ignored", change_id=str(event.change_id))


async def record_hand_over(uow: UnitOfWork, event: PackageHandedOver) -> None:
    """A new provider takes over a package whose provider declined a change: the carried-on placement
    ends and its hours are released (the new award, PackagePlaced, follows and commits the new
    provider's). A redelivery, or a placement already replaced, changes nothing."""
    await _end_placement(
        uow,
        event.package_id,
        event.handed_over_at,
        causation=event.event_id,
        why="replaced",
        provider_id=event.from_provider_id,
    )


async def answer_change_through_api(
    uow: UnitOfWork,
    provider_id: str,
    change_id: uuid.UUID,
    *,
    accept: bool,
    reason: DeclineReason | None = None,
    text: str | None = None,
) -> dict:
    """A webhook or portal adapter's answer to a change offered to it: accept, or decline with a reason
    code (``text``: its own words, kept here). LookupError (a 404) for a change not offered to it;
    :class:`Refused` (409) when answered already, settled, past its window, or the adapter is
    automatic, or an increase would take it over its capacity."""
    provider = await repo.lock_provider(uow.conn, provider_id)  # providers first (decision 0077)
    offer = await repo.lock_change_offer(uow.conn, change_id)
    if provider is None or offer is None or offer["provider_id"] != provider_id:
        raise LookupError(f"no change {change_id} offered to you")
    at, adapter = _answerable(provider, offer, this="this change", window="the change's window", answers="changes")
    extra = offer["hours_per_week"] - offer["previous_hours"]
    if accept:
        free = domain.free_hours(repo.profile_of(provider), provider["held_hours"])
        if extra > 0 and free < extra:
            raise Refused(
                f"the change adds {extra} h/week and you have {free} h free; raise your capacity first",
                code="capacity-short",
                field="weekly_capacity_hours",
            )
        decline = None
    else:
        decline = domain.Decline(reason or DeclineReason.other, text or "")
    await _answer_change(uow, change_id, offer["package_id"], provider_id, adapter, decline, at, extra=extra)
    return {
        "change_id": str(change_id),
        "package_id": str(offer["package_id"]),
        "status": "accepted" if accept else "declined",
        "answered_at": at.isoformat(),
    }


async def _end_placement(
    uow: UnitOfWork,
    package_id: uuid.UUID,
    at: dt.datetime,
    *,
    causation: uuid.UUID | None,
    why: str,
    provider_id: str | None = None,
    hold_until: dt.date | None = None,
) -> None:
    """End the package's live placement - if it was placed before ``at`` (and, given, is
    ``provider_id``'s): an ending replayed after a later award leaves the new placement alone.
    Its hours are given back - or, with ``hold_until`` (a notice's last day, UK), held until then;
    a hand-back also counts against the provider's rating."""
    await repo.lock_package_providers(uow.conn, package_id)
    placement = await repo.end_placement(
        uow.conn, package_id, at, why=why, provider_id=provider_id, hold_until=hold_until
    )
    if placement is None:
        return  # none live, or already ended (a redelivery), or a later award's
    row = None
    if placement["hours_held_until"] is None:
        row = await repo.commit_hours(uow.conn, placement["provider_id"], -placement["hours_per_week"])
    recorded = False
    if why == "handed_back":
        # The hand-back and late-start record of the quality register (decision 0103), dated: the
        # profile's hand-backs are those of the 12 months to today, from it (decision 0119).
        recorded = await repo.insert_incident(
            uow.conn, placement["provider_id"], package_id, "hand_back", clock.uk_date(at)
        )
        row = await repo.date_hand_backs(uow.conn, placement["provider_id"], clock.uk_date(now()))
    if row is not None:  # the profile changed: its hours, or its hand-backs
        await uow.emit(provider_updated(row, causation=causation))
    if recorded:
        await _recorded(
            uow, placement["provider_id"], QualityChange.hand_back, by="system", at=at, causation=causation,
            package_id=package_id,
        )  # fmt: skip


async def change_status(
    uow: UnitOfWork, provider_id: str, *, status: str, reason: str, decided_by: str
) -> ProviderUpdated:
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
    log.warning(
        "provider status changed",
        provider_id=provider_id,
        status=status,
        was=current,
        reason=reason,
        decided_by=decided_by,
    )
    return updated


# ---- joining the framework (decision records 0112-0114) ------------------------------------


async def record_application(uow: UnitOfWork, application: dict[str, Any], *, recorded_by: str) -> dict[str, Any]:
    """The contracts and quality team records an application received through the tender portal
    (decision 0112). ``application``: the request's fields (zones, bands, skills, capacity in carer
    hours per week, CQC location and rating, adapter, tender reference, received_on). Raises
    :class:`domain.JoiningRefused`: 422 ``zones.N`` (no such zone), 422 ``received_on`` (after today,
    or outside every re-opening window: joining.yaml, decision 0114), 409 ``provider_id`` (already on
    the framework or applying), 409 ``tender_reference`` (recorded before)."""
    terms = load_joining()
    at = now()
    domain.unknown_zones(application["zones"], load_framework().zones)
    window = domain.window_for(terms, application["received_on"], clock.uk_date(at))
    if await uow.conn.fetchval("SELECT true FROM providers WHERE provider_id = $1", application["provider_id"]):
        raise domain.JoiningRefused(
            f"provider {application['provider_id']!r} is already on the framework",
            code="provider-exists",
            field="provider_id",
            status=409,
        )
    try:
        async with uow.conn.transaction():  # a savepoint: a duplicate is told apart, not a failed transaction
            row = await repo.insert_application(
                uow.conn,
                application | {"application_id": uuid.uuid4(), "window_id": window.id},
                recorded_by=recorded_by,
                at=at,
            )
    except asyncpg.UniqueViolationError as exc:
        duplicate = exc.constraint_name or ""
        field = "tender_reference" if "tender_reference" in duplicate else "provider_id"
        raise domain.JoiningRefused(
            f"{field} {application[field]!r} already has an application (recorded before)",
            code="provider-exists",
            field=field,
            status=409,
        ) from None
    log.info("application recorded", application_id=str(row["application_id"]), window=window.id)
    return await application_view(uow.conn, row)


async def record_check(
    uow: UnitOfWork,
    application_id: uuid.UUID,
    *,
    item: str,
    outcome: str,
    evidence_reference: str,
    reviewed_on: dt.date | None,
    note: str | None,
    reviewed_by: str,
) -> dict[str, Any]:
    """One due-diligence check of a received application: an item of the configured checklist,
    passed or failed, the evidence's reference, the reviewer (the verified identity) and the UK
    date (today unless given). A later check of the same item replaces it for the approval. Raises
    ``LookupError`` (404), :class:`domain.JoiningRefused` (422 ``item``/``reviewed_on``, 409 decided)."""
    row = await repo.application(uow.conn, application_id, lock=True)
    if row is None:
        raise LookupError(f"no application {application_id}")
    domain.check_undecided(application_id, row["status"])
    at = now()
    today = clock.uk_date(at)
    day = reviewed_on or today
    domain.check_review(load_joining(), item, day, row["received_on"], today)
    await repo.insert_check(
        uow.conn,
        application_id,
        item=item,
        outcome=outcome,
        evidence_reference=evidence_reference,
        reviewed_by=reviewed_by,
        reviewed_on=day,
        note=note,
        at=at,
    )
    return await application_view(uow.conn, row)


async def approve_application(
    uow: UnitOfWork, application_id: uuid.UUID, *, decided_by: str, note: str | None, box: SecretBox
) -> dict[str, Any]:
    """Approve: every checklist item's latest check passed (else 422 ``checklist.<item>``), then the
    provider joins the registry active with its adapter, its status history starts with the
    approval, and ProviderUpdated goes out in the same transaction - the brokerage offers to it from
    then on. A webhook adapter gets its signing secret, returned here once (``webhook_secret``).
    Raises ``LookupError`` (404) and :class:`domain.JoiningRefused` (409 decided or id taken)."""
    row = await repo.application(uow.conn, application_id, lock=True)
    if row is None:
        raise LookupError(f"no application {application_id}")
    domain.check_undecided(application_id, row["status"])
    domain.check_approval(
        load_joining(), _latest_outcomes(await repo.checks(uow.conn, application_id)), row["cqc_rating"]
    )
    entry = domain.joining_entry(dict(row) | {"adapter": json.loads(row["adapter"])})
    provider = await repo.insert_provider(uow.conn, entry)
    if provider is None:
        raise domain.JoiningRefused(
            f"provider {row['provider_id']!r} is already on the framework",
            code="provider-exists",
            field="provider_id",
            status=409,
        )
    if row["cqc_location_id"]:
        # The register knows the joiner's CQC location, so the CQC import finds it (an attack test
        # found approvals dropped it); a location another provider holds is a 409 naming it.
        await _claim_location(uow, row["provider_id"], row["cqc_location_id"])
        await repo.register_row(uow.conn, row["provider_id"])
        await repo.set_cqc_location(uow.conn, row["provider_id"], row["cqc_location_id"])
    at = now()
    await repo.record_joining(
        uow.conn,
        row["provider_id"],
        reason=f"joined the framework: application {application_id}",
        decided_by=decided_by,
        at=at,
    )
    rules = repo.rules_of(provider)
    secret = None
    if rules.kind == "webhook":
        secret = await set_adapter(uow, row["provider_id"], rules, new_secret=True, box=box)
        provider = await fetch_one(uow.conn, "SELECT * FROM providers WHERE provider_id = $1", row["provider_id"])
    await uow.emit(provider_updated(provider))
    decided = await repo.decide_application(
        uow.conn, application_id, status="approved", decided_by=decided_by, at=at, refusal_reason=None, note=note
    )
    log.warning("provider joined the framework", provider_id=row["provider_id"], application_id=str(application_id))
    return await application_view(uow.conn, decided) | ({"webhook_secret": secret} if secret else {})


async def refuse_application(
    uow: UnitOfWork, application_id: uuid.UUID, *, reason: str, decided_by: str, note: str | None
) -> dict[str, Any]:
    """Refuse a received application with a reason code (domain.RefusalReason); nothing joins the
    registry. Raises ``LookupError`` (404), :class:`domain.JoiningRefused` (409 decided)."""
    row = await repo.application(uow.conn, application_id, lock=True)
    if row is None:
        raise LookupError(f"no application {application_id}")
    domain.check_undecided(application_id, row["status"])
    decided = await repo.decide_application(
        uow.conn, application_id, status="refused", decided_by=decided_by, at=now(), refusal_reason=reason, note=note
    )
    return await application_view(uow.conn, decided)


def _latest_outcomes(checks: list[asyncpg.Record]) -> dict[str, domain.CheckOutcome]:
    """Each item's latest outcome (the checks come oldest first)."""
    return {c["item"]: c["outcome"] for c in checks}


async def application_view(conn: Connection | asyncpg.Pool, row: asyncpg.Record) -> dict[str, Any]:
    """An application as the API shows it: its fields, the decision, and the checklist in the
    configured order - each item's title, state (passed, failed, missing) and latest check - with
    every check recorded (``history``) and ``ready_to_approve``."""
    checks = await repo.checks(conn, row["application_id"])
    terms = load_joining()
    latest = {c["item"]: c for c in checks}
    states = domain.checklist_state(terms, _latest_outcomes(checks))

    def check_view(c: asyncpg.Record) -> dict[str, Any]:
        return {
            k: c[k]
            for k in ("item", "outcome", "evidence_reference", "reviewed_by", "reviewed_on", "note", "recorded_at")
        }

    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in dict(row).items() if k != "adapter"} | {
        "adapter": json.loads(row["adapter"]),
        "checklist": [
            {"item": item.id, "title": item.title, "evidence": item.evidence, "state": states[item.id]}
            | ({"latest": check_view(latest[item.id])} if item.id in latest else {})
            for item in terms.checklist
        ],
        "history": [check_view(c) for c in checks],
        "ready_to_approve": row["status"] == "received" and all(s == "passed" for s in states.values()),
    }


# ---- the provider API's commands --------------------------------------------------------


class Refused(Exception):
    """A command the current state does not allow: an HTTP ``status`` (409; 422 for a value out of
    range) with a problem ``code`` (services/runtime/problems.py) and the request ``field`` at fault;
    the message says why."""

    def __init__(self, message: str, *, code: str, status: int = 409, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.field = field


def offer_notice(source: OfferMade | asyncpg.Record, provider_id: str) -> OfferNotice:
    """The offer as the provider's system sees it, from the OfferMade event or the stored offer row."""
    if isinstance(source, OfferMade):
        fields = dict(
            package_id=source.package_id,
            offer_round=source.offer_round,
            tier=source.tier,
            package=source.package,
            band_rate=source.band_rate,
            window_closes_at=source.window_closes_at,
        )
    else:
        fields = dict(
            package_id=source["package_id"],
            offer_round=source["offer_round"],
            tier=source["tier"],
            package=PackageSpec.model_validate_json(source["spec"]),
            band_rate=source["band_rate"],
            window_closes_at=source["window_closes_at"],
            status=source["status"],
        )
    base = f"/me/offers/{fields['package_id']}"
    return OfferNotice(
        provider_id=provider_id, answer_with={"bid": f"{base}/bid", "decline": f"{base}/decline"}, **fields
    )


def _answerable(
    provider: asyncpg.Record, offer: asyncpg.Record, *, this: str, window: str, answers: str
) -> tuple[dt.datetime, str]:
    """(now, the provider's adapter kind) when the provider may still answer this offer of a
    package or of a change through the provider API; :class:`Refused` (409) when it was answered or
    settled already, its window has closed, or the provider's adapter answers automatically."""
    if offer["status"] != "offered":
        raise Refused(f"{this} is already {offer['status']}", code="already-answered", field="status")
    at = now()
    if at >= offer["window_closes_at"]:
        raise Refused(
            f"{window} closed at {clock.format_uk(offer['window_closes_at'])}",
            code="offer-closed",
            field="window_closes_at",
        )
    adapter = repo.rules_of(provider).kind
    if adapter == "automatic":
        raise Refused(
            f"your adapter is automatic: the service answers your {answers} by your rules",
            code="automatic-adapter",
            field="adapter",
        )
    return at, adapter


async def answer_through_api(
    uow: UnitOfWork,
    provider_id: str,
    package_id: uuid.UUID,
    answer: BidRequest | DeclineRequest,
    *,
    user_id: uuid.UUID | None = None,
    credential_id: str | None = None,
) -> dict:
    """A webhook or portal adapter's answer to its own latest offer of the package, recorded with
    who answered: the named user (``user_id``, decision 0126) or the organisation's API credential
    (``credential_id``). Neither is on the event: the answer's event names the provider only.

    Refused when the provider was never offered the package (LookupError: a 404, so another
    provider's offers cannot even be probed), when it already answered, when the round is over or
    its window has closed, or when a bid would take it over its capacity."""
    provider = await repo.lock_provider(uow.conn, provider_id)  # providers first, then offers: no deadlocks
    offer = await repo.latest_offer(uow.conn, provider_id, package_id, lock=True)
    if provider is None or offer is None:
        raise LookupError(f"no offer of package {package_id} to you")
    at, adapter = _answerable(provider, offer, this="this offer", window="the offer window", answers="offers")
    common = dict(
        correlation_id=package_id,
        package_id=package_id,
        offer_round=offer["offer_round"],
        provider_id=provider_id,
        adapter=adapter,
        answered_at=at,
    )
    if isinstance(answer, BidRequest):
        spec = PackageSpec.model_validate_json(offer["spec"])
        hours = spec.hours_per_week
        free = domain.free_hours(repo.profile_of(provider), provider["held_hours"])
        if free < hours:
            raise Refused(
                f"a bid holds {hours} h/week and you have {free} h free; raise your capacity first",
                code="capacity-short",
                field="weekly_capacity_hours",
            )
        today = clock.uk_date(at)  # the UK date: at 00:30 BST "today" is already the new day
        if answer.earliest_start < today or answer.earliest_start > spec.start_date + dt.timedelta(days=366):
            raise Refused(
                f"earliest_start must be between today ({today}, UK) and a year after the requested start "
                f"({spec.start_date})",
                code="invalid-date",
                status=422,
                field="earliest_start",
            )
        await repo.record_bid(
            uow.conn,
            package_id=package_id,
            offer_round=offer["offer_round"],
            provider_id=provider_id,
            hourly_rate=answer.rate,
            hold=hours,
            at=at,
        )
        await uow.emit(BidSubmitted(hourly_rate=answer.rate, earliest_start=answer.earliest_start, **common))
    else:
        await repo.record_decline(
            uow.conn,
            package_id=package_id,
            offer_round=offer["offer_round"],
            provider_id=provider_id,
            reason=answer.reason.value,
            text=answer.text,
            at=at,
        )
        await uow.emit(OfferDeclined(reason=answer.reason, **common))
    await uow.conn.execute(
        "UPDATE offers SET adapter = $4, earliest_start = $5, answered_by_user = $6, answered_by_credential = $7 "
        "WHERE package_id = $1 AND offer_round = $2 AND provider_id = $3",
        package_id,
        offer["offer_round"],
        provider_id,
        adapter,
        getattr(answer, "earliest_start", None),
        user_id,
        credential_id,
    )
    # Answered: the offer's webhook delivery, if still being retried, is not sent again.
    await repo.withdraw_offer_deliveries(uow.conn, package_id)
    return {
        "package_id": str(package_id),
        "offer_round": offer["offer_round"],
        "status": "bid" if isinstance(answer, BidRequest) else "declined",
        "answered_at": at.isoformat(),
    }


async def update_own_profile(
    uow: UnitOfWork,
    provider_id: str,
    *,
    weekly_capacity_hours: Decimal | None,
    rules_changes: dict[str, Any],
) -> None:
    """Capacity is in the registry (the brokerage hears of it through ProviderUpdated); call times are
    the adapter's own settings. Capacity cannot drop below what is committed and held.
    ``weekly_capacity_hours``: None for no change; ``rules_changes``: the adapter settings sent
    (``call_times``, ``max_calls_per_day``), a None going back to the setting's default."""
    row = await repo.lock_provider(uow.conn, provider_id)
    if row is None:
        raise LookupError(f"no provider {provider_id!r}")
    if rules_changes:
        rules = repo.rules_of(row)
        defaults = domain.AutomaticRules.model_fields
        changed = rules.model_copy(
            update={k: defaults[k].default if v is None else v for k, v in rules_changes.items()}
        )
        rules = domain.AutomaticRules.model_validate(changed.model_dump())
        row = await repo.update_adapter(uow.conn, provider_id, rules.model_dump(mode="json"), row["webhook_secret"])
    if weekly_capacity_hours is not None and weekly_capacity_hours != row["weekly_capacity_hours"]:
        # Unchanged (the portal's form always sends it): no new revision, no event.
        floor = row["committed_hours"] + row["held_hours"]
        if weekly_capacity_hours < floor:
            raise Refused(
                f"capacity cannot go below the {floor} h/week committed to placements and held for bids",
                code="capacity-below-commitments",
                field="weekly_capacity_hours",
            )
        row = await repo.update_capacity(uow.conn, provider_id, weekly_capacity_hours)
        await uow.emit(provider_updated(row))


async def request_coverage_change(
    uow: UnitOfWork, provider_id: str, *, zones: list[str], bands: list[str], reason: str
) -> dict:
    """A provider asks for its zones and bands to become these (whole lists, each member once: the
    request model refuses a repeat). Raises :class:`Refused`: 422 ``zones.N`` unknown-zone, 409
    change-request-pending."""
    known = set(load_framework().zones)
    for i, zone in enumerate(zones):
        if zone not in known:
            raise Refused(f"no zone {zone!r} in the framework", code="unknown-zone", status=422, field=f"zones.{i}")
    # One statement: a check before the insert let concurrent requests past it, and the unique index
    # (one pending request a provider) then made them 500s (found by an attack: ten at once).
    row = await uow.conn.fetchrow(
        """INSERT INTO change_requests (provider_id, zones, bands, reason) VALUES ($1, $2, $3, $4)
           ON CONFLICT (provider_id) WHERE status = 'pending' DO NOTHING RETURNING *""",
        provider_id,
        zones,
        bands,
        reason,
    )
    if row is None:
        raise Refused(
            "a change request of yours is already awaiting the brokerage team's decision",
            code="change-request-pending",
            field="status",
        )
    return change_request_view(row)


async def decide_coverage_change(
    uow: UnitOfWork, request_id: int, *, approve: bool, decided_by: str, reason: str
) -> dict:
    row = await uow.conn.fetchrow("SELECT * FROM change_requests WHERE request_id = $1 FOR UPDATE", request_id)
    if row is None:
        raise LookupError(f"no change request {request_id}")
    if row["status"] != "pending":
        raise Refused(
            f"change request {request_id} was already {row['status']}", code="change-request-decided", field="status"
        )
    decided = await fetch_one(
        uow.conn,
        """UPDATE change_requests SET status = $2, decided_at = now(), decided_by = $3, decision_reason = $4
            WHERE request_id = $1 RETURNING *""",
        request_id,
        "approved" if approve else "rejected",
        decided_by,
        reason,
    )
    if approve:
        await repo.lock_provider(uow.conn, row["provider_id"])
        provider = await repo.update_coverage(uow.conn, row["provider_id"], list(row["zones"]), list(row["bands"]))
        await uow.emit(provider_updated(provider))
    return change_request_view(decided)


def change_request_view(row: asyncpg.Record) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, list | tuple) else v) for k, v in dict(row).items()}


async def set_adapter(
    uow: UnitOfWork, provider_id: str, adapter: domain.AutomaticRules, *, new_secret: bool, box: SecretBox
) -> str | None:
    """Choose the provider's adapter; returns a new webhook signing secret when one was made (shown
    once; kept sealed with the installation's key, services/runtime/sealing.py)."""
    row = await repo.lock_provider(uow.conn, provider_id)
    if row is None:
        raise LookupError(f"no provider {provider_id!r}")
    if adapter.kind == "webhook" and not adapter.webhook_url:
        raise ValueError("a webhook adapter needs webhook_url")
    stored = row["webhook_secret"]
    made = None
    if adapter.kind == "webhook" and (new_secret or not stored):
        made = new_webhook_secret()
        stored = box.seal(made)
        # Rotated by the council: the old secret stops at once (no overlap; a provider rotating
        # its own secret chooses an overlap: :func:`rotate_webhook_secret`).
        await repo.rotate_webhook_secret(uow.conn, provider_id, stored, None)
    await repo.update_adapter(uow.conn, provider_id, adapter.model_dump(mode="json"), stored)
    return made


def new_webhook_secret() -> str:
    """A webhook signing secret: ``whsec_`` and 256 random bits (URL-safe base64), shown once."""
    return "whsec_" + secrets.token_urlsafe(32)


# Settings a provider's adapter has, and which of them the council's PATCH may change (all).
ADAPTER_FIELDS = frozenset(domain.AutomaticRules.model_fields)


async def patch_adapter(
    uow: UnitOfWork, provider_id: str, changes: dict[str, Any], *, new_secret: bool, box: SecretBox
) -> tuple[domain.AutomaticRules, str | None]:
    """Change only the adapter settings sent (merge semantics: a field not sent keeps its value;
    one sent as null goes back to its default). Returns the settings after the change and a new
    signing secret when one was made. ``ValueError`` for a combination the rules refuse (a webhook
    adapter without a URL): a 422."""
    row = await repo.lock_provider(uow.conn, provider_id)
    if row is None:
        raise LookupError(f"no provider {provider_id!r}")
    current = repo.rules_of(row).model_dump(mode="json")
    unknown = set(changes) - ADAPTER_FIELDS
    if unknown:
        raise ValueError(f"not an adapter setting: {', '.join(sorted(unknown))}")
    defaults = domain.AutomaticRules().model_dump(mode="json")
    merged = current | {k: (defaults[k] if v is None else v) for k, v in changes.items()}
    rules = domain.AutomaticRules.model_validate(merged)
    if rules.kind == "webhook" and not rules.webhook_url:
        raise Refused(
            "a webhook adapter needs webhook_url (send one, or keep the one set)",
            code="invalid-request",
            status=422,
            field="webhook_url",
        )
    secret = await set_adapter(uow, provider_id, rules, new_secret=new_secret, box=box)
    return rules, secret


async def register_webhook(
    uow: UnitOfWork, provider_id: str, url: str, *, box: SecretBox
) -> tuple[domain.AutomaticRules, str | None]:
    """A provider registers (or changes) its own webhook URL (the SSRF guard has checked it).

    A portal adapter becomes a webhook adapter (both answer through the provider API; now offers
    are POSTed too); a webhook adapter just moves to the new URL; an automatic adapter keeps
    answering by its rules - the URL is kept for test deliveries, and the council switches the
    adapter (decision 0100). The first registration makes the signing secret, returned once."""
    row = await repo.lock_provider(uow.conn, provider_id)
    if row is None:
        raise LookupError(f"no provider {provider_id!r}")
    rules = repo.rules_of(row)
    kind = "webhook" if rules.kind in ("portal", "webhook") else rules.kind
    changed = domain.AutomaticRules.model_validate(rules.model_dump() | {"webhook_url": url, "kind": kind})
    made = None
    stored = row["webhook_secret"]
    if not stored:
        made = new_webhook_secret()
        stored = box.seal(made)
    await repo.update_adapter(uow.conn, provider_id, changed.model_dump(mode="json"), stored)
    if kind == "webhook":
        # Deliveries still being retried go to the new address from their next attempt.
        await uow.conn.execute(
            "UPDATE webhook_deliveries SET url = $2 WHERE provider_id = $1 AND status = 'pending'", provider_id, url
        )
    return changed, made


MAX_SECRET_OVERLAP = dt.timedelta(days=7)


async def rotate_webhook_secret(
    uow: UnitOfWork, provider_id: str, *, overlap: dt.timedelta, box: SecretBox
) -> tuple[str, dt.datetime | None]:
    """A provider rotates its own signing secret: a new one signs every attempt from now, and the
    one it replaces signs them too until ``overlap`` has passed (both signatures in the header),
    so the receiver can switch at any moment in between. Returns (the new secret, shown once; when
    the previous one stops signing, None without an overlap). Refused (409 ``no-webhook``) when no
    webhook URL is registered."""
    row = await repo.lock_provider(uow.conn, provider_id)
    if row is None:
        raise LookupError(f"no provider {provider_id!r}")
    if not repo.rules_of(row).webhook_url or not row["webhook_secret"]:
        raise Refused("register a webhook URL first (PUT /me/webhook)", code="no-webhook", field="webhook_url")
    if not dt.timedelta(0) <= overlap <= MAX_SECRET_OVERLAP:
        raise Refused(
            f"the overlap must be between 0 and {MAX_SECRET_OVERLAP.days * 24} hours",
            code="invalid-request",
            status=422,
            field="overlap_hours",
        )
    made = new_webhook_secret()
    until = now() + overlap if overlap > dt.timedelta(0) else None
    await repo.rotate_webhook_secret(uow.conn, provider_id, box.seal(made), until)
    return made, until


TEST_DELIVERY_WINDOW = dt.timedelta(minutes=10)  # a test delivery is retried for up to this long
MAX_PENDING_TESTS = 5


def test_offer(provider: asyncpg.Record, at: dt.datetime) -> TestOfferNotice:
    """A sample offer for the provider's receiver: a package in its first zone and band, at the
    framework's current rate for the band; made up, no person behind it."""
    profile = repo.profile_of(provider)
    framework = load_framework()
    zone = framework.zones.get(profile.zones[0]) if profile.zones else None
    band = profile.bands[0]
    package_id = uuid.uuid4()
    base = f"/me/offers/{package_id}"
    return TestOfferNotice(
        package_id=package_id,
        offer_round=1,
        provider_id=profile.provider_id,
        tier=profile.tier,
        package=PackageSpec(
            zone=zone.id if zone else "test-zone",
            band=band,
            postcode_district=zone.postcode_districts[0] if zone and zone.postcode_districts else "LE1",
            hours_per_week=Decimal("7.00"),
            visits={"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
            needs=["personal_care"],
            urgency="community",
            start_date=clock.uk_date(at) + dt.timedelta(days=7),
        ),
        band_rate=framework.rate_card_on(clock.uk_date(at)).rates[band],
        window_closes_at=at + dt.timedelta(hours=24),
        answer_with={"bid": f"{base}/bid", "decline": f"{base}/decline"},
    )


async def queue_test_delivery(uow: UnitOfWork, provider_id: str) -> asyncpg.Record:
    """A signed test offer for the provider's registered URL, delivered (and retried) by the
    delivery loop like any delivery. Refused (409) without a URL, or with too many test
    deliveries still pending."""
    row = await repo.lock_provider(uow.conn, provider_id)
    if row is None:
        raise LookupError(f"no provider {provider_id!r}")
    rules = repo.rules_of(row)
    if not rules.webhook_url or not row["webhook_secret"]:
        raise Refused("register a webhook URL first (PUT /me/webhook)", code="no-webhook", field="webhook_url")
    if await repo.pending_tests(uow.conn, provider_id) >= MAX_PENDING_TESTS:
        raise Refused(
            f"{MAX_PENDING_TESTS} test deliveries are still pending; wait for them",
            code="too-many-pending-tests",
            field="status",
        )
    at = now()
    return await repo.insert_extra_delivery(
        uow.conn,
        delivery_id=uuid.uuid4(),
        provider_id=provider_id,
        kind="test",
        url=rules.webhook_url,
        body=test_offer(row, at).model_dump_json(),
        give_up_at=at + TEST_DELIVERY_WINDOW,
    )


REDELIVERY_WINDOW = dt.timedelta(hours=24)
# Redeliveries a provider may have waiting at once: the delivery loop is shared by every provider
# (found by an attack: thirty redeliveries of one failed test, each retried for a day, to any URL).
MAX_PENDING_REDELIVERIES = 5


async def redeliver(uow: UnitOfWork, provider_id: str, delivery_id: uuid.UUID) -> asyncpg.Record:
    """A past delivery sent again, as a new delivery (a new id, the same body, signed afresh) to
    the URL registered now. Refused (409) while the original is still pending, while
    :data:`MAX_PENDING_REDELIVERIES` of the provider's are, and for an offer or a change that can
    no longer be answered (a closed offer is never delivered again, decision 0093); a notice or a
    test can always be redelivered (a test tried for a test's 10 minutes). Another provider's
    delivery is a 404."""
    provider = await repo.lock_provider(uow.conn, provider_id)
    original = await repo.delivery_of(uow.conn, provider_id, delivery_id)
    if provider is None or original is None:
        raise LookupError(f"no delivery {delivery_id} of yours")
    url = repo.rules_of(provider).webhook_url
    if not url or not provider["webhook_secret"]:
        raise Refused("register a webhook URL first (PUT /me/webhook)", code="no-webhook", field="webhook_url")
    if original["status"] == "pending":
        raise Refused(
            "this delivery is still being tried; redeliver it once it is delivered or failed",
            code="delivery-pending",
            field="status",
        )
    if await repo.pending_redeliveries(uow.conn, provider_id) >= MAX_PENDING_REDELIVERIES:
        raise Refused(
            f"{MAX_PENDING_REDELIVERIES} redeliveries are still being tried; wait for them",
            code="too-many-pending-redeliveries",
            field="status",
        )
    at = now()
    # A test is tried as long as a test is (it stood in for the 24 hours of a notice, found by an attack).
    give_up_at = at + (TEST_DELIVERY_WINDOW if original["kind"] == "test" else REDELIVERY_WINDOW)
    if original["kind"] == "offer":
        offer = await repo.latest_offer(uow.conn, provider_id, original["package_id"])
        if (
            offer is None
            or offer["offer_round"] != original["offer_round"]
            or offer["status"] != "offered"
            or offer["window_closes_at"] <= at
        ):
            raise Refused(
                "the offer can no longer be answered: a closed offer is not delivered again",
                code="offer-closed",
                field="window_closes_at",
            )
        give_up_at = offer["window_closes_at"]
    elif original["kind"] == "change":
        change = await uow.conn.fetchrow(
            "SELECT status, window_closes_at FROM change_offers WHERE change_id = $1", original["change_id"]
        )
        if change is None or change["status"] != "offered" or change["window_closes_at"] <= at:
            raise Refused(
                "the change can no longer be answered: it is not delivered again",
                code="offer-closed",
                field="window_closes_at",
            )
        give_up_at = change["window_closes_at"]
    return await repo.insert_extra_delivery(
        uow.conn,
        delivery_id=uuid.uuid4(),
        provider_id=provider_id,
        kind=original["kind"],
        url=url,
        body=original["body"],
        give_up_at=give_up_at,
        package_id=original["package_id"],
        offer_round=original["offer_round"],
        change_id=original["change_id"],
        redelivery_of=original["redelivery_of"] or original["delivery_id"],
    )


async def issue_credential(uow: UnitOfWork, provider_id: str, *, label: str, replace: bool) -> dict:
    """A new API credential for the provider; with ``replace``, its other credentials are revoked
    (rotation). The token is in the answer only: just its hash is kept."""
    if await repo.lock_provider(uow.conn, provider_id) is None:
        raise LookupError(f"no provider {provider_id!r}")
    revoked = await repo.revoke_credentials(uow.conn, provider_id) if replace else []
    issued = domain.issue_credential()
    row = await repo.insert_credential(uow.conn, provider_id, issued.credential_id, issued.secret_sha256, label)
    return dict(row) | {"token": issued.token, "revoked": revoked}


async def deliver_due_webhooks(
    pool: asyncpg.Pool, client: httpx.AsyncClient, settings: ServiceSettings, box: SecretBox, *, batch: int = 20
) -> int:
    """One pass of the webhook deliveries: POST each due offer, signed with the provider's secret,
    and record the outcome; a failure is retried later with backoff until the offer window closes
    (or ``webhook_max_attempts``). Returns how many were attempted.

    Each attempt is claimed with a lease in its own short transaction and the POST runs outside
    any transaction, so a slow receiver holds no lock; a crash mid-POST means the lease runs out
    and the same delivery id is sent again (receivers drop duplicates by that id)."""
    lease = settings.webhook_timeout_seconds * 3
    async with pool.acquire() as conn:
        due = await repo.claim_due_deliveries(conn, batch, lease)

    async def attempt(row: asyncpg.Record) -> None:
        body = row["body"].encode()
        code, error = None, None
        # During a rotation's overlap both secrets sign (the new one first): decision 0100.
        keys = [box.open(row["webhook_secret"]) or ""]
        if row["previous_webhook_secret"]:
            keys.append(box.open(row["previous_webhook_secret"]) or "")
        started, attempted_at = time.monotonic(), now()
        try:
            response = await client.post(
                row["url"],
                content=body,
                headers=signed_headers(keys, str(row["delivery_id"]), body),
                timeout=settings.webhook_timeout_seconds,
            )
            code = response.status_code
            if not 200 <= code < 300:
                # The status code only: a receiver's body is never stored or shown (decision 0070).
                error = f"HTTP {code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        delay = retry_delay(
            row["attempts"],
            initial=settings.webhook_backoff_initial_seconds,
            maximum=settings.webhook_backoff_max_seconds,
            jitter=random.random(),
        )
        async with pool.acquire() as conn:
            await repo.record_delivery_outcome(
                conn,
                row["delivery_id"],
                delivered=error is None,
                status_code=code,
                error=error,
                retry_in=delay,
                max_attempts=settings.webhook_max_attempts,
                attempt=row["attempts"],
                attempted_at=attempted_at,
                duration_ms=int((time.monotonic() - started) * 1000),
                signed_with=len(keys),
            )
        if error:
            log.warning(
                "webhook delivery failed; will retry",
                delivery_id=str(row["delivery_id"]),
                provider_id=row["provider_id"],
                attempt=row["attempts"],
                retry_in=round(delay, 2),
                error=error,
            )

    await asyncio.gather(*(attempt(r) for r in due))
    return len(due)


# ---- safeguarding concerns (decision records 0106-0108) -----------------------------------------
# A concern's words and personal details stay in the concerns table: no event, notification or log
# line carries them (the log names the concern's id only). A pause of new offers reaches the
# brokerage as the provider's profile with ``offers_paused`` (ProviderUpdated), without why.


def _refuse(refusal: domain.ConcernRefusal | None) -> None:
    if refusal is not None:
        raise Refused(refusal.message, code=refusal.code, status=refusal.status, field=refusal.field)


async def raise_concern(
    uow: UnitOfWork,
    *,
    package_id: uuid.UUID | None,
    provider_id: str | None,
    category: domain.ConcernCategory,
    details: str,
    adult_at_risk: str | None,
    immediate_risk: bool,
    raised_by: str,
    raised_by_kind: str,
    raised_by_role: str | None = None,
    credential_id: str | None = None,
) -> dict[str, Any]:
    """Record a concern for the safeguarding queue: ``{concern_id, reference, raised_at}`` back, nothing
    else (the raiser cannot read it again). Raises :class:`Refused` (422) without a subject, for a
    provider the registry does not have (field ``subject.provider_id``) or a package the brokerage
    never requested (field ``subject.package_id``, decision 0130)."""
    _refuse(domain.subject_refusal(package_id, provider_id))
    if provider_id and not await uow.conn.fetchval("SELECT true FROM providers WHERE provider_id = $1", provider_id):
        raise Refused(f"no provider {provider_id!r}", code="invalid-request", status=422, field="subject.provider_id")
    if package_id and not await uow.conn.fetchval(
        # Offered packages too: one requested before known_packages existed is known by its offers.
        "SELECT EXISTS (SELECT 1 FROM known_packages WHERE package_id = $1)"
        " OR EXISTS (SELECT 1 FROM offers WHERE package_id = $1)",
        package_id,
    ):
        # Decision 0130: a concern about a package nobody requested would sit in the queue about no one.
        raise Refused(
            f"no package {package_id}: the brokerage has not requested it (check the id)",
            code="invalid-request",
            status=422,
            field="subject.package_id",
        )
    row = await repo.insert_concern(
        uow.conn,
        concern_id=uuid.uuid4(),
        package_id=package_id,
        provider_id=provider_id,
        category=category.value,
        details=details,
        adult_at_risk=adult_at_risk or None,
        immediate_risk=immediate_risk,
        raised_by=raised_by,
        raised_by_kind=raised_by_kind,
        raised_by_role=raised_by_role,
        credential_id=credential_id,
        raised_at=now(),
    )
    log.info("safeguarding concern raised", concern_id=str(row["concern_id"]))
    return {
        "concern_id": row["concern_id"],
        "reference": domain.concern_reference(row["reference"]),
        "raised_at": row["raised_at"],
    }


async def pause_offers(
    uow: UnitOfWork, concern_id: uuid.UUID, *, reason: domain.OfferPauseReason, decided_by: str
) -> dict[str, Any]:
    """The safeguarding team pauses new offers to the concern's provider pending the enquiry: the
    decision recorded (who, when, the reason code), and the provider's profile ``offers_paused`` sent
    on ProviderUpdated unless another concern's pause already holds it. Raises LookupError (404) and
    :class:`Refused` (409: closed, not about a provider, already paused)."""
    concern = await repo.lock_concern(uow.conn, concern_id)
    if concern is None:
        raise LookupError(f"no concern {concern_id}")
    _refuse(
        domain.pause_refusal(status=concern["status"], provider_id=concern["provider_id"], paused=concern["paused"])
    )
    provider_id = concern["provider_id"]
    row = await repo.lock_provider(uow.conn, provider_id)
    at = now()
    await uow.conn.execute("UPDATE concerns SET paused = true WHERE concern_id = $1", concern_id)
    await repo.add_concern_decision(uow.conn, concern_id, "offers_paused", reason.value, decided_by, at)
    if row is not None and not repo.profile_of(row).offers_paused:
        await uow.emit(provider_updated(await repo.set_offers_paused(uow.conn, provider_id, True)))
    log.warning("new offers paused", concern_id=str(concern_id))
    return {"concern_id": concern_id, "provider_id": provider_id, "offers_paused": True, "paused_at": at}


async def record_concern_outcome(
    uow: UnitOfWork, concern_id: uuid.UUID, *, outcome: domain.ConcernOutcome, decided_by: str
) -> dict[str, Any]:
    """The enquiry's outcome closes the concern and lifts its pause: the provider's new offers resume
    (ProviderUpdated) unless another open concern still holds a pause. Raises LookupError (404) and
    :class:`Refused` (409: already closed)."""
    concern = await repo.lock_concern(uow.conn, concern_id)
    if concern is None:
        raise LookupError(f"no concern {concern_id}")
    _refuse(domain.outcome_refusal(status=concern["status"]))
    provider_id, was_paused = concern["provider_id"], concern["paused"]
    row = await repo.lock_provider(uow.conn, provider_id) if was_paused else None
    at = now()
    await uow.conn.execute(
        """UPDATE concerns SET status = 'closed', outcome = $2, paused = false, closed_by = $3, closed_at = $4
            WHERE concern_id = $1""",
        concern_id,
        outcome.value,
        decided_by,
        at,
    )
    await repo.add_concern_decision(uow.conn, concern_id, "outcome", outcome.value, decided_by, at)
    still_paused = None
    if was_paused:
        await repo.add_concern_decision(uow.conn, concern_id, "offers_resumed", outcome.value, decided_by, at)
        still_paused = domain.offers_paused_after(await repo.pausing_concerns(uow.conn, provider_id))
        if row is not None and repo.profile_of(row).offers_paused and not still_paused:
            await uow.emit(provider_updated(await repo.set_offers_paused(uow.conn, provider_id, False)))
    log.info("safeguarding concern closed", concern_id=str(concern_id))
    return {
        "concern_id": concern_id,
        "status": "closed",
        "outcome": outcome.value,
        "provider_id": provider_id,
        "offers_paused": still_paused,
        "closed_at": at,
    }


def concern_summary(row: asyncpg.Record) -> dict[str, Any]:
    """A concern as the safeguarding queue shows it: codes, ids and times, never its words."""
    out = {k: row[k] for k in repo.CONCERN_SUMMARY.replace("\n", " ").replace(" ", "").split(",")}
    out["reference"] = domain.concern_reference(row["reference"])
    return out


# ---- the quality and risk register (decision 0103) ----------------------------------------


def quality_weights() -> quality.QualityWeights:
    """The weights in force (deploy/reference/framework.yaml), read afresh like the brokerage's."""
    return quality.QualityWeights(**load_framework().quality_weights)


async def register_inputs(
    conn: Connection | asyncpg.Pool, row: asyncpg.Record
) -> tuple[quality.QualityInputs, asyncpg.Record]:
    """The score's inputs of the provider of ``row`` today (a UK date), with the hand-backs of the dated
    record in the 12 months to today (decision 0119), and the register's counts."""
    profile = repo.profile_of(row)
    today = clock.uk_date(now())
    counts = await repo.register_counts(conn, profile.provider_id, today)
    reviewed_at = row["local_risk_reviewed_at"]
    inputs = quality.inputs_as_of(
        cqc_rating=profile.cqc_rating,
        local_risk=profile.local_risk,
        as_of=today,
        hand_back_dates=await repo.hand_back_dates(conn, profile.provider_id, today),
        cqc_inspected_on=row["cqc_inspected_on"],
        local_risk_reviewed_on=clock.uk_date(reviewed_at) if reviewed_at else None,
    )
    return inputs, counts


async def register_state(conn: Connection | asyncpg.Pool, row: asyncpg.Record) -> QualityRegister:
    """The register of the provider of ``row`` (:func:`repo.register_row`) as the events carry it."""
    inputs, counts = await register_inputs(conn, row)
    profile = repo.profile_of(row)
    return QualityRegister(
        cqc_location_id=row["cqc_location_id"],
        cqc_rating=profile.cqc_rating,
        cqc_inspected_on=row["cqc_inspected_on"],
        local_risk=profile.local_risk,
        local_risk_reviewed_on=inputs.local_risk_reviewed_on,
        hand_backs_12m=inputs.hand_backs_12m,
        late_starts_12m=counts["late_starts_12m"],
        open_complaints=counts["open_complaints"],
        open_improvement_plans=counts["open_improvement_plans"],
        quality_score=quality.score(inputs, quality_weights()).score,
    )


async def _locked_register(uow: UnitOfWork, provider_id: str) -> asyncpg.Record:
    if await repo.lock_provider(uow.conn, provider_id) is None:
        raise LookupError(f"no provider {provider_id!r}")
    row = await repo.register_row(uow.conn, provider_id)
    assert row is not None  # locked above
    return row


async def _recorded(
    uow: UnitOfWork,
    provider_id: str,
    change: QualityChange,
    *,
    by: str,
    at: dt.datetime,
    note: str | None = None,
    previous: dict[str, Any] | None = None,
    profile_changed: bool = False,
    import_id: uuid.UUID | None = None,
    causation: uuid.UUID | None = None,
    **fields: Any,
) -> ProviderQualityRecorded:
    """After a change to the register: the change in its history (with the words, which stay here),
    ProviderQualityRecorded with the register as it now stands, and ProviderUpdated when the profile
    the brokerage ranks with changed - all in the caller's transaction."""
    row = await repo.register_row(uow.conn, provider_id)
    assert row is not None
    event = ProviderQualityRecorded(
        correlation_id=uuid.uuid5(uuid.NAMESPACE_URL, f"provider:{provider_id}"),
        causation_id=causation,
        provider_id=provider_id,
        change=change,
        recorded_by=by,
        recorded_at=at,
        quality_register=await register_state(uow.conn, row),
        **fields,
    )
    detail = {k: v for k, v in event.model_dump(mode="json", include=set(fields)).items() if v is not None}
    await repo.insert_quality_change(
        uow.conn,
        event_id=event.event_id,
        provider_id=provider_id,
        change=change.value,
        detail=detail | ({"previous": previous} if previous else {}),
        note=note,
        recorded_by=by,
        recorded_at=at,
        import_id=import_id,
    )
    if profile_changed:
        await uow.emit(provider_updated(row, causation=event.event_id))
    await uow.emit(event)
    return event


async def date_seeded_hand_backs(uow: UnitOfWork, entries: list[dict]) -> int:
    """Give every profile without dated hand-backs (a provider just seeded from providers.yaml, or a
    profile written before decision 0119) its dated record: the hand-backs quality-register.yaml dates
    for it (``hand_backs``: UK dates, before the platform), then the profile's hand-backs in the 12
    months to today from the record, published (ProviderUpdated). Once per provider: a dated profile
    is left alone. Returns how many profiles were dated."""
    undated = await repo.lock_undated_profiles(uow.conn)
    if not undated:
        return 0
    wanted = set(undated)
    await repo.insert_seeded_hand_backs(
        uow.conn,
        [
            (e["provider_id"], dt.date.fromisoformat(str(d)))
            for e in entries
            if e["provider_id"] in wanted
            for d in e.get("hand_backs") or ()
        ],
    )
    for row in await repo.date_many_hand_backs(uow.conn, undated, clock.uk_date(now())):
        await uow.emit(provider_updated(row))
    return len(undated)


async def seed_quality_register(uow: UnitOfWork, entries: list[dict]) -> int:
    """Start the register of each seeded provider that has no CQC location yet (quality-register.yaml):
    its location id and the date of the rating its profile holds. Returns how many were started."""
    started = 0
    for entry in entries:
        row = await repo.register_row(uow.conn, entry["provider_id"])
        if row is None or row["cqc_location_id"] is not None:
            continue
        inspected = entry.get("cqc_inspected_on")
        await uow.conn.execute(
            """UPDATE quality_register SET cqc_location_id = $2, cqc_inspected_on = $3, cqc_source = 'seed'
                WHERE provider_id = $1 AND NOT EXISTS (SELECT 1 FROM quality_register WHERE cqc_location_id = $2)""",
            entry["provider_id"],
            entry["cqc_location_id"],
            dt.date.fromisoformat(str(inspected)) if inspected else None,
        )
        await _recorded(uow, entry["provider_id"], QualityChange.cqc_location, by="seed", at=now())
        started += 1
    return started


async def record_cqc_rating(
    uow: UnitOfWork,
    provider_id: str,
    *,
    rating: str,
    inspected_on: dt.date | None,
    location_id: str | None,
    by: str,
    note: str = "",
    correction: bool = False,
) -> ProviderQualityRecorded:
    """A CQC rating entered by hand (the CSV import: :func:`import_cqc`). Policy for "not yet
    rated" (docs/guide/quality-register.md): a provider CQC has not rated - new, or re-registered -
    is entered as ``not_yet_rated`` and scores 50 of 100 on the CQC component; a rating needs the
    CQC's publication date, ``not_yet_rated`` may have none. Raises Refused (422) otherwise.

    A rating published before the one held is refused (409 ``older-than-held``), as in the import,
    so that an old letter cannot undo a newer rating; so is an undated ``not_yet_rated`` where a
    dated rating is held, which would clear the date the next rating is compared with - unless it
    is a ``correction`` (the held date was typed wrong, the CQC withdrew the rating, the provider
    re-registered under a new location), which needs a ``note`` saying why (422) (decision 0157)."""
    if correction and not note.strip():
        raise Refused("a correction needs a note saying why", code="invalid-request", status=422, field="note")
    if rating != "not_yet_rated" and inspected_on is None:
        raise Refused(
            "a CQC rating needs its publication date", code="invalid-request", status=422, field="inspected_on"
        )
    problem = None if inspected_on is None else domain.cqc_publication_problem(inspected_on, clock.uk_date(now()))
    if problem:
        raise Refused(f"the publication date {problem}", code="invalid-request", status=422, field="inspected_on")
    row = await _locked_register(uow, provider_id)
    held = row["cqc_inspected_on"]
    # Whatever the location id sent: changing it and back was a way round (a second attack).
    if held is not None and (inspected_on is None or inspected_on < held) and not correction:
        raise Refused(
            f"the rating held was published on {held}, "
            + ("and this one has no date" if inspected_on is None else f"after {inspected_on}")
            + ": to correct the register, send correction true with a note saying why",
            code="older-than-held",
            status=409,
            field="inspected_on",
        )
    previous = {"cqc_rating": repo.profile_of(row).cqc_rating, "cqc_inspected_on": held}
    await _claim_location(uow, provider_id, location_id)
    await repo.set_cqc(
        uow.conn, provider_id, rating=rating, inspected_on=inspected_on, location_id=location_id, source="manual"
    )
    return await _recorded(
        uow,
        provider_id,
        QualityChange.cqc_rating,
        by=by,
        at=now(),
        note=note,
        previous=previous,
        profile_changed=True,
        cqc_rating=rating,
        cqc_inspected_on=inspected_on,
    )


async def _claim_location(uow: UnitOfWork, provider_id: str, location_id: str | None) -> None:
    if location_id is None:
        return
    holder = await uow.conn.fetchval(
        "SELECT provider_id FROM quality_register WHERE cqc_location_id = $1 AND provider_id <> $2",
        location_id,
        provider_id,
    )
    if holder is not None:
        raise Refused(
            f"CQC location {location_id} is registered to {holder}",
            code="conflict",
            status=409,
            field="cqc_location_id",
        )


async def set_cqc_location(uow: UnitOfWork, provider_id: str, *, location_id: str, by: str) -> ProviderQualityRecorded:
    """The CQC location id the provider is registered under (how the CSV import finds it)."""
    await _locked_register(uow, provider_id)
    await _claim_location(uow, provider_id, location_id)
    await repo.set_cqc_location(uow.conn, provider_id, location_id)
    return await _recorded(uow, provider_id, QualityChange.cqc_location, by=by, at=now())


async def review_local_risk(
    uow: UnitOfWork, provider_id: str, *, risk: str, reason: RiskReason, note: str, by: str
) -> ProviderQualityRecorded:
    """The contracts and quality team's review of the provider's local risk rating (RAG): who (the
    token's user), when, why (a code; the note stays here). A review that keeps the rating is
    recorded too (the weekly review is evidence)."""
    row = await _locked_register(uow, provider_id)
    was = repo.profile_of(row).local_risk
    at = now()
    await repo.set_local_risk(uow.conn, provider_id, risk=risk, reason=reason.value, reviewed_by=by, at=at)
    return await _recorded(
        uow,
        provider_id,
        QualityChange.local_risk,
        by=by,
        at=at,
        note=note,
        previous={"local_risk": was},
        profile_changed=True,
        risk_reason=reason,
    )


async def record_complaint(
    uow: UnitOfWork,
    provider_id: str,
    *,
    theme: ComplaintTheme,
    received_on: dt.date,
    package_id: uuid.UUID | None,
    summary: str,
    by: str,
) -> ProviderQualityRecorded:
    """A complaint about the provider, coded by theme (its summary stays here), about one of its
    packages or none. Refused (422 ``received_on``) for a date after today (UK) or more than 6 years
    ago (:func:`domain.complaint_received_problem`, decision 0157); (422 ``package_id``) for a
    package the provider was never offered."""
    problem = domain.complaint_received_problem(received_on, clock.uk_date(now()))
    if problem:
        raise Refused(f"the received date {problem}", code="invalid-request", status=422, field="received_on")
    await _locked_register(uow, provider_id)
    if package_id is not None and not await repo.was_offered(uow.conn, provider_id, package_id):
        raise Refused(
            f"{provider_id} was never offered package {package_id}: name a package of theirs, or none",
            code="invalid-request",
            status=422,
            field="package_id",
        )
    complaint_id = uuid.uuid4()
    await repo.insert_complaint(
        uow.conn,
        complaint_id=complaint_id,
        provider_id=provider_id,
        theme=theme.value,
        package_id=package_id,
        summary=summary,
        received_on=received_on,
        recorded_by=by,
    )
    return await _recorded(
        uow,
        provider_id,
        QualityChange.complaint_received,
        by=by,
        at=now(),
        complaint_id=complaint_id,
        complaint_theme=theme,
        package_id=package_id,
    )


async def close_complaint(
    uow: UnitOfWork, provider_id: str, complaint_id: uuid.UUID, *, outcome: str, note: str, by: str
) -> ProviderQualityRecorded:
    await _locked_register(uow, provider_id)
    closed = await repo.close_complaint(
        uow.conn, provider_id, complaint_id, outcome=outcome, on=clock.uk_date(now()), by=by
    )
    if closed is None:
        raise LookupError(f"no open complaint {complaint_id} about {provider_id}")
    return await _recorded(
        uow,
        provider_id,
        QualityChange.complaint_closed,
        by=by,
        at=now(),
        note=note,
        complaint_id=complaint_id,
        complaint_theme=ComplaintTheme(closed["theme"]),
    )


async def open_improvement_plan(
    uow: UnitOfWork, provider_id: str, *, area: RiskReason, actions: str, due_on: dt.date, by: str
) -> ProviderQualityRecorded:
    """A quality improvement plan agreed with the provider, due by a UK date: not in the past, not
    more than a year ahead (:func:`domain.plan_due_problem`, decision 0157). Refused (422 ``due_on``)."""
    problem = domain.plan_due_problem(due_on, clock.uk_date(now()))
    if problem:
        raise Refused(f"the due date {problem}", code="invalid-request", status=422, field="due_on")
    await _locked_register(uow, provider_id)
    plan_id = uuid.uuid4()
    await repo.insert_plan(
        uow.conn,
        plan_id=plan_id,
        provider_id=provider_id,
        area=area.value,
        actions=actions,
        due_on=due_on,
        opened_by=by,
        at=now(),
    )
    return await _recorded(
        uow,
        provider_id,
        QualityChange.improvement_plan_opened,
        by=by,
        at=now(),
        plan_id=plan_id,
        plan_due_on=due_on,
        risk_reason=area,
    )


async def close_improvement_plan(
    uow: UnitOfWork, provider_id: str, plan_id: uuid.UUID, *, met: bool, note: str, by: str
) -> ProviderQualityRecorded:
    await _locked_register(uow, provider_id)
    closed = await repo.close_plan(uow.conn, provider_id, plan_id, met=met, on=clock.uk_date(now()), by=by)
    if closed is None:
        raise LookupError(f"no open improvement plan {plan_id} of {provider_id}")
    return await _recorded(
        uow,
        provider_id,
        QualityChange.improvement_plan_closed,
        by=by,
        at=now(),
        note=note,
        plan_id=plan_id,
        plan_due_on=closed["due_on"],
        previous={"met": met},
    )


async def record_start(uow: UnitOfWork, event: PackageStarted) -> None:
    """Care began: a start after the placement's agreed start date goes on the provider's late-start
    record (once, whatever the redeliveries)."""
    placement = await uow.conn.fetchrow(
        """SELECT provider_id, start_date FROM placements
            WHERE package_id = $1 AND provider_id = $2 AND ended_at IS NULL""",
        event.package_id,
        event.provider_id,
    )
    if placement is None or event.started_on <= placement["start_date"]:
        return
    days = (event.started_on - placement["start_date"]).days
    await _locked_register(uow, event.provider_id)
    if await repo.insert_incident(
        uow.conn, event.provider_id, event.package_id, "late_start", event.started_on, days_late=days
    ):
        await _recorded(
            uow,
            event.provider_id,
            QualityChange.late_start,
            by=event.recorded_by,
            at=event.recorded_at,
            causation=event.event_id,
            package_id=event.package_id,
        )


@dataclass(frozen=True)
class CqcImport:
    """What an import did, or would do (``applied`` false: nothing changed)."""

    import_id: uuid.UUID
    applied: bool
    rows: int
    changed: list[dict[str, Any]]
    unchanged: list[str]
    refused: list[dict[str, Any]]
    not_on_the_framework: int
    refused_rows: int = 0  # all the refused rows; ``refused`` lists the first MAX_REFUSED_LISTED

    def report(self) -> dict[str, Any]:
        return {
            "import_id": str(self.import_id),
            "applied": self.applied,
            "rows": self.rows,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "refused": self.refused,
            "not_on_the_framework": self.not_on_the_framework,
            "refused_rows": max(self.refused_rows, len(self.refused)),
        }


async def import_cqc(uow: UnitOfWork, data: bytes, *, by: str, file_name: str = "", dry_run: bool = False) -> CqcImport:
    """Import CQC ratings from its care directory CSV (decision 0104): every framework provider
    whose CQC location id is in the file takes the file's rating and publication date. All or
    nothing: when any row is refused (a bad location id, rating or date, a location rated twice
    differently, a rating older than the one held) nothing is changed and the report lists the
    refused rows with the column and the problem. Rows of locations not on the framework are
    counted and not read further. Raises domain.CqcFileRefused for a file with no CQC header (HTTP 422)."""
    register = await repo.register_by_location(uow.conn)
    ignored, unreadable_total = [0], [0]
    # Parsed in a worker thread: a 64 MB file must not hold up the service's other requests.
    rows, unreadable = await asyncio.to_thread(
        domain.read_cqc_csv,
        data,
        only=register.keys(),
        ignored=ignored,
        today=clock.uk_today(),
        refused_total=unreadable_total,
    )
    changes, conflicts, unchanged = domain.cqc_changes(rows, register)
    refused = sorted(unreadable + conflicts, key=lambda r: r.line)[: domain.MAX_REFUSED_LISTED]
    import_id = uuid.uuid4()
    applied = not refused and not dry_run  # any unreadable row is among ``refused`` (its first MAX_REFUSED_LISTED)
    at = now()
    changed = [
        {
            "line": c.line,
            "provider_id": c.provider_id,
            "cqc_location_id": c.location_id,
            "cqc_rating_was": c.rating_was,
            "cqc_rating": c.rating,
            "cqc_inspected_on_was": c.inspected_was.isoformat() if c.inspected_was else None,
            "cqc_inspected_on": c.inspected_on.isoformat() if c.inspected_on else None,
        }
        for c in changes
    ]
    if applied:
        for c in changes:
            await repo.set_cqc(
                uow.conn,
                c.provider_id,
                rating=c.rating,
                inspected_on=c.inspected_on,
                location_id=None,
                source="cqc_import",
            )
            await _recorded(
                uow,
                c.provider_id,
                QualityChange.cqc_rating,
                by=by,
                at=at,
                previous={"cqc_rating": c.rating_was, "cqc_inspected_on": c.inspected_was},
                profile_changed=True,
                import_id=import_id,
                cqc_rating=c.rating,
                cqc_inspected_on=c.inspected_on,
            )
    result = CqcImport(
        import_id=import_id,
        applied=applied,
        rows=len(rows) + unreadable_total[0] + ignored[0],
        changed=changed,
        unchanged=sorted(unchanged),
        refused=[
            {"line": r.line, "cqc_location_id": r.location_id, "field": r.field, "problem": r.problem} for r in refused
        ],
        not_on_the_framework=ignored[0],
        refused_rows=unreadable_total[0] + len(conflicts),
    )
    if not dry_run:
        # The attempt is kept either way: a refused file's report can be read again later.
        await repo.insert_cqc_import(
            uow.conn,
            import_id=import_id,
            imported_by=by,
            at=at,
            file_name=file_name,
            rows=result.rows,
            applied=applied,
            report=result.report(),
        )
    log.info("cqc import", applied=applied, changed=len(changed), refused=len(refused), by=by)
    return result


# ---- named staff users under a provider's organisation (decision 0126) ---------------------------


def staff_user_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "user_id": row["user_id"],
        "provider_id": row["provider_id"],
        "username": row["username"],
        "name": row["name"],
        "role": row["role"],
        "added_at": row["added_at"],
        "added_by": row["added_by"],
    }


async def add_staff_user(
    uow: UnitOfWork, provider_id: str, *, username: str, name: str, role: str, added_by: str
) -> dict[str, Any]:
    """A named user of ``provider_id``, who signs in at the identity provider as ``username`` (its
    ``preferred_username``; they need an account there with the role provider_staff). Refused:
    LookupError for an unknown provider; 422 naming the field for a bad username or name; 409
    ``user-exists`` when that username is already a live user of this provider. Another provider's
    user of the same username is neither refused nor told of: who signs in as whom is the identity
    provider's, whose token names their organisation (decision 0165)."""
    problems = domain.staff_user_problems(username, name)
    if problems:
        field, message = next(iter(problems.items()))
        raise Refused(message, code="invalid-request", status=422, field=field)
    if await uow.conn.fetchval("SELECT 1 FROM providers WHERE provider_id = $1", provider_id) is None:
        raise LookupError(f"no provider {provider_id!r}")
    row = await repo.add_staff_user(
        uow.conn,
        provider_id=provider_id,
        username=domain.canonical_username(username),
        name=name.strip(),
        role=role,
        added_by=added_by,
    )
    if row is None:
        raise Refused(
            f"{domain.canonical_username(username)!r} is already a user of {provider_id!r}",
            code="user-exists",
            field="username",
        )
    log.info("provider user added", provider_id=provider_id, user_id=str(row["user_id"]), role=role)
    return staff_user_view(row)


async def remove_staff_user(
    uow: UnitOfWork, provider_id: str, user_id: uuid.UUID, *, removed_by: str, by_user: uuid.UUID | None = None
) -> dict[str, Any]:
    """Ends a user's access at once (their past answers keep their name). A provider's admin removes
    anyone of its organisation but themselves (409 ``own-user``: no organisation locks itself out);
    LookupError when ``user_id`` is not a live user of ``provider_id``."""
    if by_user is not None and by_user == user_id:
        raise Refused(
            "you cannot remove yourself: ask another admin user or the council", code="own-user", field="user_id"
        )
    row = await repo.remove_staff_user(uow.conn, provider_id=provider_id, user_id=user_id, removed_by=removed_by)
    if row is None:
        raise LookupError(f"no user {user_id} of {provider_id!r}")
    log.info("provider user removed", provider_id=provider_id, user_id=str(user_id))
    return staff_user_view(row) | {"removed_at": row["removed_at"]}


def history_entry(row: asyncpg.Record) -> dict[str, Any]:
    """One offer of a provider's history: the package as offered, its answer, who answered, and
    how it ended (domain.offer_outcome; a lost bid's rank, never the winner's price)."""
    spec = PackageSpec.model_validate_json(row["spec"])
    answered_by = (
        {"user_id": row["answered_by_user"], "name": row["answered_by_name"]}
        if row["answered_by_user"] is not None
        else None
    )
    return {
        "package_id": row["package_id"],
        "offer_round": row["offer_round"],
        "tier": row["tier"],
        "zone": spec.zone,
        "band": spec.band.value,
        "hours_per_week": spec.hours_per_week,
        "received_at": row["received_at"],
        "window_closes_at": row["window_closes_at"],
        "answer": {"bid": "bid", "declined": "declined"}.get(row["status"])
        or ("bid" if row["hourly_rate"] is not None else "declined" if row["decline_reason"] else None),
        "hourly_rate": row["hourly_rate"],
        "decline_reason": row["decline_reason"],
        "answered_at": row["answered_at"],
        "answered_by": answered_by,
        "answered_with": "api_credential" if row["answered_with_credential"] else (row["adapter"] or None),
        "outcome": domain.offer_outcome(row["status"], row["outcome"], row["window_closed"]),
        "closed_reason": row["closed_reason"],
        "rank": row["rank"],
        "ranked_bids": row["ranked_bids"],
        "closed_at": row["closed_at"],
    }
