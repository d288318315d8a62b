"""What the reporting service does with each event; each function runs in the consumer's unit of
work (the inbox row and the projection's rows commit together).

- :func:`project`       any event of brokerage.packages, providers.answers, providers.registry or
                        notifications.confirmations -> its rows in the projection
- :func:`count_dead_letter` a record on homecare.dead-letters -> a row in ``dead_letters``
- :func:`rebuild`       ``homecare reporting rebuild``: what the topics still hold, replayed into
                        the projection (resumable, idempotent)

The projection publishes nothing: reporting is a reader of the platform's history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import topics
from schemas.events import (
    BidSubmitted,
    ChangeDeclined,
    Event,
    ExceptionDecided,
    ExceptionRequested,
    FundingRecorded,
    NotificationFailed,
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
    PlacementConfirmed,
    ProviderUpdated,
)
from services.reporting import repository as repo
from services.runtime import topics as runtime_topics
from services.runtime.consumer import Delivery, misrouted, read_event
from services.runtime.db import Connection
from services.runtime.dead_letters import DeadLetter
from services.runtime.kafka import partitions_of
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
    PackagePaused,
    PackageResumed,
    PackageEnded,
)
PROJECTED = (
    *LIFECYCLE,
    PackageReopened,
    # Changes to a running package (decision 0082): milestones, the package's status unchanged.
    PackageChanged,
    ChangeDeclined,
    PackageHandedOver,
    # Reviews (decision 0088) and funding records (decision 0089): milestones, the status unchanged.
    PackageReviewed,
    FundingRecorded,
    BidSubmitted,
    OfferDeclined,
    ProviderUpdated,
    PlacementConfirmed,
    NotificationFailed,
)


async def project(uow: UnitOfWork, event: Event) -> None:
    """Apply one event to the projection. Safe to apply twice and in any order across topics."""
    await apply(uow.conn, event)


async def apply(conn: repo.Writer, event: Event) -> None:
    """One event's writes, on a connection or gathered into a :class:`repository.Batch`."""
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
        case PackagePaused():
            # Still in care for the KPIs: the provider holds the hours until a resume or an ending.
            if await repo.add_milestone(
                conn,
                event,
                event.paused_at,
                provider_id=event.provider_id,
                reason=event.reason,
                hours_per_week=event.hours_per_week,
                on_date=event.paused_on,
            ):
                await repo.mark(conn, event.package_id, "pauses = pauses + 1")
        case PackageResumed():
            await repo.add_milestone(
                conn,
                event,
                event.resumed_at,
                provider_id=event.provider_id,
                hours_per_week=event.hours_per_week,
                on_date=event.resumed_on,
            )
        case PackageEnded():
            if await repo.add_milestone(
                conn,
                event,
                event.ended_at,
                provider_id=event.provider_id,
                reason=event.reason,
                hours_per_week=event.hours_per_week,
                on_date=event.effective_date,
            ):
                await repo.mark(
                    conn,
                    event.package_id,
                    "ended_on = LEAST(ended_on, $2), end_reason = coalesce(end_reason, $3)",
                    event.effective_date,
                    event.reason,
                )
        case PackageChanged():
            await repo.add_milestone(
                conn,
                event,
                event.changed_at,
                provider_id=event.provider_id,
                reason=event.reason,
                hours_per_week=event.hours_per_week,
                on_date=event.effective_date,
            )
        case ChangeDeclined():
            await repo.add_milestone(
                conn,
                event,
                event.declined_at,
                provider_id=event.provider_id,
                reason=event.outcome,
                hours_per_week=event.hours_per_week,
            )
        case PackageHandedOver():
            await repo.add_milestone(
                conn,
                event,
                event.handed_over_at,
                provider_id=event.from_provider_id,
                hours_per_week=event.previous_hours_per_week,
                on_date=event.handed_over_on,
            )
        case PackageReviewed():
            await repo.add_milestone(
                conn,
                event,
                event.reviewed_at,
                provider_id=event.provider_id,
                reason=event.outcome,
                hours_per_week=event.hours_per_week,
                on_date=event.reviewed_on,
            )
        case FundingRecorded():
            # The funder on the first period's day; the whole record stays on the topic and in the brokerage.
            await repo.add_milestone(
                conn,
                event,
                event.recorded_at,
                provider_id=event.provider_id,
                reason=event.periods[0].funder,
                on_date=event.periods[0].effective_from,
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


@dataclass
class RebuildReport:
    """What a rebuild did: events applied, records passed over (not an event of ours, or not
    from its home topic: the live consumer dead-lettered them), and whether it reached the end."""

    applied: int = 0
    passed_over: int = 0
    finished: bool = False


async def rebuild(
    pool: asyncpg.Pool,
    bootstrap: str,
    *,
    security: dict[str, Any],
    namespace: str | None = None,
    fresh: bool = False,
    batch_size: int = 2000,
    stop_after: int | None = None,
) -> RebuildReport:
    """Replay what the event topics still hold into the projection: ``homecare reporting rebuild``.

    ``fresh`` empties the projection first (history older than the topics' retention is then
    gone from it too). Each batch of a partition is applied in one transaction with the offset
    it reached, so an interrupted rebuild resumes where it stopped, and applying an event again
    changes nothing (rows keyed by event id). ``stop_after``: stop after about that many records
    (a test's interruption). Reads without a consumer group: the live service's offsets and
    inbox are left alone, and both may run at once."""
    report = RebuildReport()
    async with pool.acquire() as conn:
        if fresh:
            await repo.reset_projection(conn)
        done = await repo.rebuild_progress(conn)
    names = [runtime_topics.resolve(t, namespace) for t in topics.EVENT_TOPICS]
    partitions = [TopicPartition(n, p) for n in names for p in await partitions_of(bootstrap, n, security)]
    if not partitions:
        report.finished = True
        return report
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **security
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            # Past the progress, or where the topic now begins (retention may have removed more).
            consumer.seek(tp, max(done.get((tp.topic, tp.partition), 0), starts[tp]))
        while True:
            pending = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not pending:
                report.finished = True
                return report
            if stop_after is not None and report.applied + report.passed_over >= stop_after:
                return report
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=batch_size)
            for tp, records in batches.items():
                events: list[Event] = []
                for record in records:
                    event, _error = read_event(Delivery.of(record))
                    if event is None or misrouted(_base_topic(tp.topic, namespace), event):
                        report.passed_over += 1
                        continue
                    events.append(event)
                async with pool.acquire() as conn, conn.transaction():
                    batch = repo.Batch(conn)
                    await batch.start(
                        [e.event_id for e in events],
                        sorted({p for e in events if (p := getattr(e, "package_id", None)) is not None}),
                    )
                    for event in events:
                        await apply(batch, event)
                    await batch.flush()
                    await repo.save_progress(conn, tp.topic, tp.partition, records[-1].offset + 1)
                report.applied += len(events)
    finally:
        await consumer.stop()


def _base_topic(name: str, namespace: str | None) -> str:
    """The topic as this process's namespace would name it (``misrouted`` resolves in that one)."""
    ns = (namespace if namespace is not None else runtime_topics.namespace()).strip(".")
    base = name[len(ns) + 1 :] if ns and name.startswith(ns + ".") else name
    return runtime_topics.resolve(base)
