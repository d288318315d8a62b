"""What the reporting service does with each event; each function runs in the consumer's unit of
work (the inbox row and the projection's rows commit together).

- :func:`project`       any event of brokerage.packages, providers.answers, providers.registry or
                        notifications.confirmations -> its rows in the projection
- :func:`count_dead_letter` a record on homecare.dead-letters -> a row in ``dead_letters``

The projection publishes nothing: reporting is a reader of the platform's history.
"""

from __future__ import annotations

import datetime as dt

from schemas.events import (
    BidSubmitted,
    Event,
    ExceptionDecided,
    ExceptionRequested,
    NotificationFailed,
    OfferDeclined,
    OfferMade,
    PackageCancelled,
    PackageHandedBack,
    PackagePlaced,
    PackageReopened,
    PackageRequested,
    PackageStarted,
    PackageUnplaced,
    PlacementConfirmed,
    ProviderUpdated,
)
from services.reporting import repository as repo
from services.runtime.db import Connection
from services.runtime.dead_letters import DeadLetter
from services.runtime.outbox import UnitOfWork

# The events that change a package's state (its ``status``: the latest of them).
LIFECYCLE = (
    PackageRequested,
    OfferMade,
    PackagePlaced,
    PackageUnplaced,
    PackageCancelled,
    PackageStarted,
    ExceptionRequested,
    ExceptionDecided,
    PackageHandedBack,
)
PROJECTED = (
    *LIFECYCLE,
    PackageReopened,
    BidSubmitted,
    OfferDeclined,
    ProviderUpdated,
    PlacementConfirmed,
    NotificationFailed,
)


async def project(uow: UnitOfWork, event: Event) -> None:
    """Apply one event to the projection. Safe to apply twice and in any order across topics."""
    conn = uow.conn
    match event:
        case PackageRequested():
            await repo.add_request(conn, event.package_id, event.package.model_dump(), event.requested_at)
        case OfferMade():
            await repo.add_offer(conn, event)
        case BidSubmitted():
            await repo.add_answer(conn, event, "bid")
        case OfferDeclined():
            await repo.add_answer(conn, event, "decline")
        case PackagePlaced():
            await repo.add_placement(conn, event)
        case PackageUnplaced():
            if await repo.add_milestone(
                conn, event, event.unplaced_at, reason=event.reason, hours_per_week=event.hours_per_week
            ):
                await repo.mark(
                    conn,
                    event.package_id,
                    "unplaced_at = GREATEST(unplaced_at, $2), unplaced_reason = $3",
                    event.unplaced_at,
                    event.reason,
                )
        case PackageCancelled():
            if await repo.add_milestone(
                conn,
                event,
                event.cancelled_at,
                provider_id=event.provider_id,
                reason=event.reason,
                hours_per_week=event.hours_per_week,
            ):
                await repo.mark(
                    conn,
                    event.package_id,
                    "cancelled_at = LEAST(cancelled_at, $2), cancel_reason = coalesce(cancel_reason, $3)",
                    event.cancelled_at,
                    event.reason,
                )
        case PackageStarted():
            if await repo.add_milestone(
                conn, event, event.recorded_at, provider_id=event.provider_id, on_date=event.started_on
            ):
                await repo.mark(conn, event.package_id, "started_on = GREATEST(started_on, $2)", event.started_on)
        case PackageHandedBack():
            if await repo.add_milestone(
                conn,
                event,
                event.recorded_at,
                provider_id=event.provider_id,
                reason=event.reason,
                hours_per_week=event.hours_per_week,
                on_date=event.notice_ends_on,
            ):
                await repo.mark(
                    conn,
                    event.package_id,
                    "hand_backs = hand_backs + 1, handed_back_at = GREATEST(handed_back_at, $2)",
                    event.recorded_at,
                )
        case PackageReopened():
            await repo.add_milestone(
                conn,
                event,
                event.reopened_at,
                provider_id=event.provider_id,
                reason=event.reason,
                hours_per_week=event.hours_per_week,
            )
        case ExceptionRequested():
            await repo.add_milestone(
                conn,
                event,
                event.requested_at,
                provider_id=event.provider_id,
                hourly_rate=event.hourly_rate,
                band_rate=event.band_rate,
            )
        case ExceptionDecided():
            await repo.add_milestone(
                conn,
                event,
                event.decided_at,
                provider_id=event.provider_id,
                reason=event.reason,
                decision=event.decision,
                hourly_rate=event.hourly_rate,
            )
        case PlacementConfirmed():
            await repo.add_notification_outcome(conn, event, "confirmed")
        case NotificationFailed():
            await repo.add_notification_outcome(conn, event, "failed")
        case ProviderUpdated():
            await repo.put_provider(conn, event)
            return
    if isinstance(event, LIFECYCLE):
        await repo.set_status(conn, event.package_id, event.event_type, event.occurred_at)


async def count_dead_letter(conn: Connection, letter: DeadLetter, recorded_at: dt.datetime) -> None:
    """A dead letter, counted once by its origin (topic, partition, offset) and the consumer that
    gave up on it; its bytes stay on the dead-letter topic (``homecare dead-letters``)."""
    declared = dict(
        (k.decode(errors="replace"), (v or b"").decode(errors="replace")) for k, v in letter.original_headers
    )
    await repo.add_dead_letter(
        conn,
        origin_topic=letter.origin_topic,
        origin_partition=letter.origin_partition,
        origin_offset=letter.origin_offset,
        consumer_group=letter.consumer,
        reason=letter.reason,
        event_type=declared.get("event_type"),
        recorded_at=recorded_at,
    )
