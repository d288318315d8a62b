"""What is flowing on the event streams: every event decoded into one line (time, type, package,
zone, band, provider, outcome), filterable by package, zone, provider, type or correlation id (a
package's journey across the three services' topics). ``homecare tail`` prints the lines; the
console's live events page streams them to the browser (:func:`live_lines`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from schemas import topics as contract
from schemas.events import EVENT_TYPES
from services.runtime import clock, topics
from services.runtime.kafka import kafka_security, partitions_of, read_topic

STREAM_BUFFER = 1000  # lines held for a slow reader (a browser); beyond that the oldest are dropped
# The event type's column: as wide as the longest name, so every line's columns line up.
TYPE_WIDTH = max(len(name) for name in EVENT_TYPES)


@dataclass(frozen=True)
class Line:
    at: str
    topic: str
    event_type: str
    package_id: str
    zone: str
    band: str
    provider: str
    outcome: str
    correlation_id: str

    def render(self) -> str:
        return "  ".join(
            [
                self.at[:23],
                f"{self.event_type:<{TYPE_WIDTH}}",
                self.package_id[:36] or "-",
                self.zone or "-",
                self.band or "-",
                self.provider or "-",
                self.outcome,
            ]
        )


def _periods(periods: Any) -> str:
    return ", then ".join(
        f"{p.get('funder')} from {p.get('effective_from')}" for p in periods or [] if isinstance(p, dict)
    )


def _hours(d: dict[str, Any]) -> str:
    return f"{d.get('hours_per_week')} h/week"


# What each event type says happened, in a few words: hours, dates, reasons and codes - never a price
# (operations follows the work, never prices: found by an attack on the console's live stream, which
# showed every bid's rate as it came), nor anything of the person. Each is called with the event,
# its package (``package``, or {}) and its profile (``profile``, or {}); only the record's own runs.
Summary = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], str]
SUMMARIES: dict[str, Summary] = {
    "PackageRequested": lambda e, spec, _: f"{_hours(spec)}, {spec.get('urgency')}",
    "OfferMade": lambda e, _s, _p: (
        f"round {e.get('offer_round')} {e.get('tier')} to {len(e.get('provider_ids') or [])} provider(s)"
    ),
    "BidSubmitted": lambda e, _s, _p: f"bid, can start {e.get('earliest_start')}",
    "OfferDeclined": lambda e, _s, _p: f"declined: {e.get('reason')}",
    "PackagePlaced": lambda e, _s, _p: f"placed ({e.get('tier')} tier)",
    "PackageUnplaced": lambda e, _s, _p: f"unplaced: {e.get('reason')}",
    "PackageCancelled": lambda e, _s, _p: f"cancelled: {e.get('reason')}",
    "PackageStarted": lambda e, _s, _p: f"started on {e.get('started_on')}",
    "PackageHandedBack": lambda e, _s, _p: f"handed back: {e.get('reason')}, notice to {e.get('notice_ends_on')}",
    "PackageReopened": lambda e, _s, _p: f"reopened: {e.get('reason')}",
    "PackageEnded": lambda e, _s, _p: f"ended: {e.get('reason')}, from {e.get('effective_date')}",
    "PackagePaused": lambda e, _s, _p: f"paused: {e.get('reason')}, from {e.get('paused_on')}",
    "PackageResumed": lambda e, _s, _p: f"resumed on {e.get('resumed_on')}",
    "ChangeOffered": lambda e, spec, _: (
        f"change offered: {e.get('previous_hours_per_week')} to {_hours(spec)}, from {e.get('effective_date')}"
    ),
    "ChangeAnswered": lambda e, _s, _p: f"change {'accepted' if e.get('accepted') else 'declined'}",
    "PackageChanged": lambda e, spec, _: (
        f"changed: {e.get('previous_hours_per_week')} to {_hours(spec)}, from {e.get('effective_date')}"
    ),
    "ChangeDeclined": lambda e, _s, _p: f"change {e.get('outcome')}: {e.get('decline_reason') or '-'}",
    "ChangeWithdrawn": lambda e, _s, _p: f"change withdrawn: {e.get('because')}",
    "PackageHandedOver": lambda e, _s, _p: f"handed over to {e.get('to_provider_id')} on {e.get('handed_over_on')}",
    "PackageReviewed": lambda e, _s, _p: f"reviewed: {e.get('outcome')}, next due {e.get('next_review_due_on') or '-'}",
    "FundingRecorded": lambda e, _s, _p: f"funding revision {e.get('revision')}: {_periods(e.get('periods'))}",
    "DischargeRequested": lambda e, _s, _p: (
        f"discharge pathway {e.get('pathway')}, {e.get('hospital')} {e.get('ward')}, "
        f"medically fit {e.get('medically_fit_on')}"
    ),
    "DischargeReferred": lambda e, _s, _p: f"referred to {e.get('service')} ({e.get('step')}), {_hours(e)}",
    "DischargeFallbackUnavailable": lambda e, _s, _p: f"fallback full: {', '.join(e.get('services_full') or [])}",
    "DischargeReferralReleased": lambda e, _s, _p: f"{e.get('service')} released from {e.get('released_on')}",
    "ServiceAgreementRecorded": lambda e, _s, _p: (
        f"agreement v{e.get('version')}: {e.get('reason')}, {e.get('status')}"
    ),
    "ExceptionRequested": lambda e, _s, _p: "above-rate bid: approval asked",
    "ExceptionFirstApproved": lambda e, _s, _p: (
        f"first approval ({e.get('approver_role')}), awaiting {e.get('awaiting') or '-'}"
    ),
    "ExceptionDecided": lambda e, _s, _p: f"above-rate bid {e.get('decision')}",
    "ProviderUpdated": lambda e, _s, profile: (
        f"revision {e.get('revision')}, {profile.get('status')}, committed {profile.get('committed_hours')} h"
    ),
    "ProviderQualityRecorded": lambda e, _s, _p: f"quality: {e.get('change')}",
    "PlacementConfirmed": lambda e, _s, _p: (
        f"confirmed to {', '.join(r.get('kind', '?') for r in e.get('recipients') or [])}"
    ),
    "NotificationFailed": lambda e, _s, _p: (
        f"{e.get('message')} to {e.get('recipient_kind')} by {e.get('channel')} failed: {e.get('reason')}"
    ),
}


def _member(e: dict[str, Any], name: str) -> dict[str, Any]:
    """A record's nested object (``package``, ``profile``), or {} when it has none or not an object."""
    value = e.get(name)
    return value if isinstance(value, dict) else {}


def _outcome(kind: Any, e: dict[str, Any], spec: dict[str, Any], profile: dict[str, Any]) -> str:
    """The record's own summary (:data:`SUMMARIES`); a field not shaped as its event's (a forged or
    dead-lettered record) is said so, never a failure of the stream."""
    summary = SUMMARIES.get(kind) if isinstance(kind, str) else None
    if summary is None:
        return ""
    try:
        return summary(e, spec, profile)
    except (TypeError, AttributeError, ValueError):
        return "(fields not as its event's)"


def describe(record: ConsumerRecord) -> Line:
    """One line for one record; anything undecodable is shown as such, never skipped."""
    # For people: UK local time, with its offset (the record's timestamp is UTC milliseconds).
    at = clock.to_uk(dt.datetime.fromtimestamp(record.timestamp / 1000, dt.UTC)).isoformat(timespec="milliseconds")
    try:
        e = json.loads(record.value)
        if not isinstance(e, dict):
            raise ValueError
    except (ValueError, TypeError):
        return Line(at, record.topic, "(undecodable)", "", "", "", "", f"{len(record.value or b'')} bytes", "")
    spec = _member(e, "package")
    profile = _member(e, "profile")
    kind = e.get("event_type", "?")
    if topics.dead_letters() == record.topic:
        headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        kind, outcome = "(dead letter)", f"{headers.get('x-dlq-reason')}: {headers.get('x-dlq-error', '')[:60]}"
    else:
        outcome = _outcome(kind, e, spec, profile)
    return Line(
        at,
        record.topic,
        kind,
        str(e.get("package_id") or ""),
        e.get("zone") or spec.get("zone") or "",
        e.get("band") or spec.get("band") or "",
        e.get("provider_id") or profile.get("provider_id") or "",
        outcome,
        str(e.get("correlation_id") or ""),
    )


def matches(
    line: Line,
    *,
    package: str | None,
    zone: str | None,
    provider: str | None,
    event_type: str | None,
    journey: str | None,
) -> bool:
    return (
        (package is None or line.package_id == package)
        and (zone is None or line.zone == zone)
        and (provider is None or line.provider == provider)
        and (event_type is None or line.event_type == event_type)
        and (journey is None or line.correlation_id == journey)
    )


async def tail_lines(
    bootstrap: str,
    names: list[str],
    *,
    follow: bool,
    from_beginning: bool,
    on_line: Callable[[Line], None],
    on_ready: Callable[[], None] | None = None,
    security: dict[str, Any] | None = None,
    **filters: str | None,
) -> None:
    """Feed ``on_line`` every matching record of the topics, oldest first (then live, with follow).
    With follow, ``on_ready()`` is called once every partition's starting offset is fixed: no
    record written after that is missed."""
    if not follow:
        records = []
        for name in names:
            records += await read_topic(bootstrap, name, security=security)
        for record in sorted(records, key=lambda r: (r.timestamp, r.topic, r.partition, r.offset)):
            line = describe(record)
            if matches(line, **filters):
                on_line(line)
        return
    security = kafka_security() if security is None else security
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **security)
    await consumer.start()
    try:
        partitions = [TopicPartition(n, p) for n in names for p in await partitions_of(bootstrap, n, security)]
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        if on_ready is not None:
            for tp in partitions:  # seeks resolve lazily; resolving them now fixes the start
                await consumer.position(tp)
            on_ready()
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for record in sorted((r for rs in batch.values() for r in rs), key=lambda r: r.timestamp):
                line = describe(record)
                if matches(line, **filters):
                    on_line(line)
    finally:
        await consumer.stop()


def event_types() -> list[str]:
    """Every event type of the contracts, sorted (the stream's filter offers them)."""
    return sorted(event.__name__ for event in contract.TOPIC_OF)


async def live_lines(
    bootstrap: str,
    *,
    stop: Callable[[], bool],
    zone: str | None = None,
    event_type: str | None = None,
    package: str | None = None,
    security: dict[str, Any] | None = None,
) -> AsyncIterator[Line | None]:
    """Every event written from now on, decoded as ``homecare tail`` decodes it. Yields None
    once the stream is positioned (everything after that will be seen) and whenever nothing
    arrived for a second, so the caller can check ``stop()`` (client gone, server stopping)."""
    queue: asyncio.Queue[Line] = asyncio.Queue(maxsize=STREAM_BUFFER)
    ready = asyncio.Event()

    def keep(line: Line) -> None:
        if queue.full():
            queue.get_nowait()
        queue.put_nowait(line)

    names = [topics.resolve(t) for t in contract.ALL]
    task = asyncio.create_task(
        tail_lines(
            bootstrap,
            names,
            security=security,
            follow=True,
            from_beginning=False,
            on_line=keep,
            on_ready=ready.set,
            package=package,
            zone=zone,
            provider=None,
            event_type=event_type,
            journey=None,
        )
    )
    positioned = asyncio.create_task(ready.wait())
    try:
        while not ready.is_set():
            await asyncio.wait({task, positioned}, timeout=1, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # raises what stopped it (Kafka unreachable)
            if stop():
                return
        yield None
        while not stop():
            if task.done():
                task.result()
            try:
                yield await asyncio.wait_for(queue.get(), timeout=1)
            except TimeoutError:
                yield None
    finally:
        positioned.cancel()
        task.cancel()
        await asyncio.gather(task, positioned, return_exceptions=True)
