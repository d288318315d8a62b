"""What the reporting service does with each event; each function runs in the consumer's unit of
work (the inbox row and the projection's rows commit together).

- :func:`project`       any event of brokerage.packages, brokerage.service-agreements,
                        providers.answers, providers.registry or notifications.confirmations
                        -> its rows in the projection
- :func:`count_dead_letter` a record on homecare.dead-letters -> a row in ``dead_letters``
- :func:`rebuild`       ``homecare reporting rebuild``: what the topics still hold, replayed into
                        the projection (resumable, idempotent)

The projection publishes nothing: reporting is a reader of the platform's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import topics
from schemas.events import (
    BidSubmitted,
    ChangeDeclined,
    ChangeWithdrawn,
    DischargeFallbackUnavailable,
    DischargeReferralReleased,
    DischargeReferred,
    DischargeRequested,
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
    ProviderQualityRecorded,
    ProviderUpdated,
    ServiceAgreementRecorded,
)
from services.reporting import repository as repo
from services.runtime import clock
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
    ChangeWithdrawn,
    PackageHandedOver,
    # Reviews (decision 0088) and funding records (decision 0089): milestones, the status unchanged.
    PackageReviewed,
    FundingRecorded,
    # Hospital discharge (decision 0097): milestones; the KPI of day 0 or 1 reads them.
    DischargeRequested,
    DischargeReferred,
    DischargeFallbackUnavailable,
    DischargeReferralReleased,
    BidSubmitted,
    OfferDeclined,
    ProviderUpdated,
    ProviderQualityRecorded,
    PlacementConfirmed,
    NotificationFailed,
    # The hand-off to finance (decisions 0109, 0118): agreed spend for the commitment report and the KPIs.
    ServiceAgreementRecorded,
)


@dataclass(frozen=True)
class Milestone:
    """Where a lifecycle event's row of ``milestones`` comes from: the names of the event's own
    fields (None: the column stays empty), and ``marks``, the package row's columns it sets
    (column -> the event's field, or :data:`COUNT` to add one; folded by
    :data:`repository.PACKAGE_FOLDS`)."""

    at: str
    provider: str | None = "provider_id"
    reason: str | None = None
    decision: str | None = None
    hourly_rate: str | None = None
    band_rate: str | None = None
    hours: str | None = "hours_per_week"
    on_date: str | None = None
    marks: tuple[tuple[str, str | int], ...] = ()

    def row(self, event: Any) -> tuple[Any, ...]:
        """The event's row of ``milestones`` (the order of ``repository.EVENT_TABLES``)."""
        field = self._field
        return (
            event.event_id,
            event.package_id,
            event.event_type,
            field(event, self.provider),
            field(event, self.reason),
            field(event, self.decision),
            field(event, self.hourly_rate),
            field(event, self.band_rate),
            field(event, self.hours),
            field(event, self.on_date),
            getattr(event, self.at),
        )

    @staticmethod
    def _field(event: Any, name: str | None) -> Any:
        """``name``: a field of the event, or a dotted path into it (``periods.0.funder``)."""
        if name is None:
            return None
        value = event
        for part in name.split("."):
            value = value[int(part)] if part.isdigit() else getattr(value, part)
        return value


COUNT = 1
MILESTONES: dict[type[Event], Milestone] = {
    PackageUnplaced: Milestone(
        "unplaced_at",
        provider=None,
        reason="reason",
        marks=(("unplaced_at", "unplaced_at"), ("unplaced_reason", "reason")),
    ),
    PackageCancelled: Milestone(
        "cancelled_at", reason="reason", marks=(("cancelled_at", "cancelled_at"), ("cancel_reason", "reason"))
    ),
    PackageStarted: Milestone("recorded_at", hours=None, on_date="started_on", marks=(("started_on", "started_on"),)),
    PackageHandedBack: Milestone(
        "recorded_at",
        reason="reason",
        on_date="notice_ends_on",
        marks=(("hand_backs", COUNT), ("handed_back_at", "recorded_at")),
    ),
    # Still in care for the KPIs: the provider holds the hours until a resume or an ending.
    PackagePaused: Milestone("paused_at", reason="reason", on_date="paused_on", marks=(("pauses", COUNT),)),
    PackageResumed: Milestone("resumed_at", on_date="resumed_on"),
    PackageEnded: Milestone(
        "ended_at",
        reason="reason",
        on_date="effective_date",
        marks=(("ended_on", "effective_date"), ("end_reason", "reason")),
    ),
    # Changes to a running package (decision 0082): milestones, the package's status unchanged.
    PackageChanged: Milestone("changed_at", reason="reason", on_date="effective_date"),
    ChangeDeclined: Milestone("declined_at", reason="outcome"),
    ChangeWithdrawn: Milestone("withdrawn_at", reason="because"),
    PackageHandedOver: Milestone(
        "handed_over_at", provider="from_provider_id", hours="previous_hours_per_week", on_date="handed_over_on"
    ),
    PackageReopened: Milestone("reopened_at", reason="reason"),
    # Reviews and funding (decisions 0088, 0089): milestones; a funding record by its first period's funder
    # (the whole record stays on the topic and in the brokerage).
    PackageReviewed: Milestone("reviewed_at", reason="outcome", on_date="reviewed_on"),
    FundingRecorded: Milestone(
        "recorded_at", reason="periods.0.funder", hours=None, on_date="periods.0.effective_from"
    ),
    # Hospital discharge (decision 0097): the request by its hospital code on the medically-fit date; a
    # referral by its service and step on the day the in-house care begins; a release on its last day.
    DischargeRequested: Milestone("requested_at", provider=None, reason="hospital", on_date="medically_fit_on"),
    DischargeReferred: Milestone(
        "referred_at", provider=None, reason="service", decision="step", on_date="referred_on"
    ),
    DischargeFallbackUnavailable: Milestone("recorded_at", provider=None, on_date="medically_fit_on"),
    DischargeReferralReleased: Milestone("released_at", reason="service", on_date="released_on"),
    ExceptionRequested: Milestone("requested_at", hours=None, hourly_rate="hourly_rate", band_rate="band_rate"),
    ExceptionDecided: Milestone(
        "decided_at", hours=None, reason="reason", decision="decision", hourly_rate="hourly_rate"
    ),
}


def _offer(e: OfferMade) -> tuple[Any, ...]:
    return (
        e.event_id, e.package_id, e.offer_round, e.tier, ",".join(e.provider_ids), e.band_rate, e.occurred_at,
        e.window_closes_at,
    )  # fmt: skip


def _bid(e: BidSubmitted) -> tuple[Any, ...]:
    return (
        e.event_id,
        e.package_id,
        e.offer_round,
        e.provider_id,
        "bid",
        e.hourly_rate,
        None,
        e.adapter,
        e.answered_at,
    )


def _decline(e: OfferDeclined) -> tuple[Any, ...]:
    return (e.event_id, e.package_id, e.offer_round, e.provider_id, "decline", None, e.reason, e.adapter, e.answered_at)


def _placement(e: PackagePlaced) -> tuple[Any, ...]:
    return (
        e.event_id, e.package_id, e.provider_id, e.offer_round, e.tier, e.hourly_rate, e.hours_per_week, e.zone,
        e.band, e.urgency, e.rate_card, e.start_date, e.placed_at,
    )  # fmt: skip


def _quality(e: ProviderQualityRecorded) -> tuple[Any, ...]:
    r = e.quality_register
    return (
        e.event_id, e.provider_id, e.change.value, r.cqc_rating, r.cqc_inspected_on, r.local_risk, r.quality_score,
        r.hand_backs_12m, r.late_starts_12m, r.open_complaints, r.open_improvement_plans, e.recorded_at,
    )  # fmt: skip


def _agreement(e: ServiceAgreementRecorded) -> tuple[Any, ...]:
    return (
        e.record_id, e.event_id, e.agreement_id, e.version, e.supersedes, e.reason.value, e.status.value,
        e.package_id, e.provider_id, e.zone, e.band.value, e.hourly_rate, e.band_rate, e.hours_per_week,
        e.weekly_cost, e.start_date, e.end_date, e.funding_revision, e.cost_centre, e.rate_card, e.recorded_at,
    )  # fmt: skip


def _agreement_lines(e: ServiceAgreementRecorded) -> list[tuple[Any, ...]]:
    """One row per payer line of each funding part (``repository.AGREEMENT_LINE`` order)."""
    return [
        (
            e.record_id,
            part_no,
            line_no,
            part.effective_from,
            part.effective_to,
            part.funder.value,
            line.payer.value,
            line.basis,
            line.percent,
            line.pounds_per_week,
            ",".join(str(c) for c in line.calls) if line.calls else None,
        )
        for part_no, part in enumerate(e.funding)
        for line_no, line in enumerate(part.lines)
    ]


def _notification(e: PlacementConfirmed | NotificationFailed) -> tuple[Any, ...]:
    if isinstance(e, PlacementConfirmed):
        return (
            e.event_id, e.package_id, "confirmed", e.provider_id, None, None, None, None, len(e.recipients), None,
            e.confirmed_at,
        )  # fmt: skip
    return (
        e.event_id, e.package_id, "failed", None, e.message, e.recipient_kind, e.channel, e.reason, None,
        e.attempts, e.failed_at,
    )  # fmt: skip


# Each event type with a row of its own: (its table, the row). PackageRequested (the package's
# own row) and ProviderUpdated (the providers table) are applied by :func:`apply` itself.
ROWS: dict[type[Event], tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    OfferMade: ("offers", _offer),
    BidSubmitted: ("answers", _bid),
    OfferDeclined: ("answers", _decline),
    PackagePlaced: ("placements", _placement),
    PlacementConfirmed: ("notification_outcomes", _notification),
    ProviderQualityRecorded: ("provider_quality", _quality),
    NotificationFailed: ("notification_outcomes", _notification),
    **{kind: ("milestones", m.row) for kind, m in MILESTONES.items()},
}


def package_values(event: Event) -> dict[str, Any]:
    """What one event says of its package's row (column -> value, folded by
    :data:`repository.PACKAGE_FOLDS`): an offer's rounds and rate, a placement's provider, rate
    and hours, a milestone's marks, a lifecycle event's state."""
    values: dict[str, Any] = {}
    match event:
        case OfferMade():
            at = event.occurred_at
            values = {"offer_rounds": 1, "first_offered_at": at, "last_offered_at": at, "band_rate": event.band_rate}
        case PackagePlaced():
            values = {
                "placements": 1,
                "placed_at": event.placed_at,
                "provider_id": event.provider_id,
                "hourly_rate": event.hourly_rate,
                "placed_hours": event.hours_per_week,
                "placed_zone": event.zone,
                "placed_band": event.band,
            }
    milestone = MILESTONES.get(type(event))
    if milestone is not None:
        values |= {c: COUNT if f == COUNT else getattr(event, str(f)) for c, f in milestone.marks}
    if isinstance(event, LIFECYCLE):
        values |= {"status": event.event_type, "status_at": event.occurred_at}
    return values


async def project(uow: UnitOfWork, events: list[Event]) -> None:
    """Apply a batch's fresh events to the projection together (the live consumer's handler, in
    its batch's unit of work: one statement per table touched, as the rebuild does). Safe to
    apply twice and in any order across topics."""
    await apply(uow.conn, events)


async def apply(conn: Connection, events: list[Event]) -> None:
    """Apply events to the projection: one statement per table they touch, whatever their number
    (the rebuild passes a partition's batch; the live consumer a batch's fresh events).

    Idempotent and order-tolerant: each event table's rows are keyed by event id and only the
    events a table did not hold yet add to their package's counters; the package row's other
    columns fold by time (:data:`repository.PACKAGE_FOLDS`). So an event applied twice, or
    events of one package arriving on different topics in another order, leave the same rows as
    one ordered pass."""
    # A funding record published again for a new provider (decision 0161) is no new record.
    events = [e for e in events if not (isinstance(e, FundingRecorded) and e.for_new_provider)]
    requests: dict[uuid.UUID, tuple[Any, ...]] = {}
    profiles: dict[str, tuple[Any, ...]] = {}
    agreements: dict[uuid.UUID, tuple[Any, ...]] = {}
    agreement_lines: list[tuple[Any, ...]] = []
    rows: dict[str, dict[uuid.UUID, tuple[Any, ...]]] = {}
    for event in events:
        match event:
            case ProviderUpdated():
                p = event.profile
                held = profiles.get(p.provider_id)
                if held is None or held[4] <= event.revision:
                    profiles[p.provider_id] = (
                        p.provider_id,
                        p.name,
                        p.tier,
                        p.status,
                        event.revision,
                        event.occurred_at,
                        ",".join(p.zones),
                        ",".join(b.value for b in p.bands),
                    )
                continue
            case ServiceAgreementRecorded():
                # Appended, never updated: a correction is a record of its own (decision 0111).
                if event.record_id not in agreements:
                    agreements[event.record_id] = _agreement(event)
                    agreement_lines += _agreement_lines(event)
                continue
            case PackageRequested():
                spec, at = event.package, event.requested_at
                requests[event.package_id] = (
                    event.package_id, spec.zone, spec.band, spec.urgency, spec.hours_per_week, spec.funding,
                    spec.start_date, at, clock.uk_date(at),
                )  # fmt: skip
        if (row_of := ROWS.get(type(event))) is not None:
            rows.setdefault(row_of[0], {})[event.event_id] = row_of[1](event)
    await repo.put_providers(conn, list(profiles.values()))
    await repo.put_agreements(conn, list(agreements.values()), agreement_lines)
    new: set[uuid.UUID] = set()
    for table, table_rows in rows.items():
        new |= await repo.insert_events(conn, table, list(table_rows.values()))
    folded: dict[uuid.UUID, dict[str, Any]] = {}
    for event in events:
        # An event a table already held added to its package's row when it was first applied.
        # A provider's events belong to no package's row.
        if isinstance(event, ProviderUpdated | ProviderQualityRecorded | ServiceAgreementRecorded) or (
            type(event) in ROWS and event.event_id not in new
        ):
            continue
        new.discard(event.event_id)  # the same event twice among these: folded once
        if values := package_values(event):
            repo.fold(folded.setdefault(event.package_id, {}), values)
    # The rows to update exist first: an answer or a confirmation on another topic may come before
    # its package's request, and an answer alone changes no package row (none made for it).
    await repo.put_packages(conn, list(requests.values()), sorted(folded.keys() - requests.keys()))
    await repo.update_packages(conn, folded)


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
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Larger fetches than the default 1 MB a partition: fewer round trips through a long history.
        max_partition_fetch_bytes=4 << 20,
        **security,
    )
    await consumer.start()
    # Reading and parsing the next batches overlaps applying this one: while the database works
    # on a batch, the reader fetches and parses (a queue of two batches bounds the memory).
    ready: asyncio.Queue[_Read | None] = asyncio.Queue(maxsize=2)

    async def read_all() -> None:
        read_so_far = 0
        while stop_after is None or read_so_far < stop_after:
            pending = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not pending:
                report.finished = True
                return
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=batch_size)
            for tp, records in batches.items():
                home = _base_topic(tp.topic, namespace)
                events: list[Event] = []
                for record in records:
                    event, _error = read_event(Delivery.of(record))
                    if event is not None and not misrouted(home, event):
                        events.append(event)
                read_so_far += len(records)
                await ready.put(_Read(tp, events, len(records) - len(events), records[-1].offset + 1))

    async def read() -> None:
        try:
            await read_all()
        except asyncio.CancelledError:
            raise  # the applier failed and is gone: nobody waits for the end
        except Exception:
            await ready.put(None)  # the applier stops, then awaits this task for its error
            raise
        await ready.put(None)

    reader: asyncio.Task[None] | None = None
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        for tp in partitions:
            # Past the progress, or where the topic now begins (retention may have removed more).
            consumer.seek(tp, max(done.get((tp.topic, tp.partition), 0), starts[tp]))
        reader = asyncio.create_task(read())
        while (batch := await ready.get()) is not None:
            async with pool.acquire() as conn, conn.transaction():
                await apply(conn, batch.events)
                await repo.save_progress(conn, batch.partition.topic, batch.partition.partition, batch.next_offset)
            report.applied += len(batch.events)
            report.passed_over += batch.passed_over
        await reader  # its error, if it failed
        if report.finished:
            async with pool.acquire() as conn:
                await repo.analyse(conn)
        return report
    finally:
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await consumer.stop()


@dataclass
class _Read:
    """A partition's batch as read: its events, the records passed over (not an event of ours,
    or not from its home topic), and the offset after it."""

    partition: TopicPartition
    events: list[Event]
    passed_over: int
    next_offset: int


def _base_topic(name: str, namespace: str | None) -> str:
    """The topic as this process's namespace would name it (``misrouted`` resolves in that one)."""
    ns = (namespace if namespace is not None else runtime_topics.namespace()).strip(".")
    base = name[len(ns) + 1 :] if ns and name.startswith(ns + ".") else name
    return runtime_topics.resolve(base)
