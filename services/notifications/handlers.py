"""What the notifications service does; each function runs in one unit of work.

- :func:`notify_all`        package events (placed, unplaced, offered, cancelled, handed back,
                            re-brokered, started, an exception asked for or refused) -> a delivery
                            row per (event, recipient, channel), [PlacementConfirmed]
- :func:`register_recipient` a contact registered over HTTP -> messages that waited for it planned
- :func:`expire_awaiting`   a message whose recipient never registered -> failed, NotificationFailed
- :func:`dispatch_due`      the dispatcher: sends due deliveries; sent, retried later, or failed

The consumer only *records* what is to be sent (in the transaction that records the event in
the inbox, so a redelivered event adds nothing); the dispatcher sends, like an outbox relay.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from schemas.events import NotificationFailed, PackagePlaced, PlacementConfirmed, Recipient
from schemas.vocabulary import NotificationFailure
from services.notifications import domain
from services.notifications import repository as repo
from services.notifications.channels import Channels, Outgoing, Permanent, Transient
from services.notifications.templates import Templates
from services.runtime import clock, metrics
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork, unit_of_work
from services.runtime.retry import retry_delay

log = get_logger(__name__)


@dataclass(frozen=True)
class NotificationRules:
    templates: Templates
    configured: frozenset[str]  # channels this installation can use
    providers_url: str  # the provider API's address, in the award's link to the person's details
    contact_grace: dt.timedelta
    max_attempts: int
    backoff_initial: float
    backoff_max: float
    lease_seconds: float
    batch_size: int


async def notify(uow: UnitOfWork, rules: NotificationRules, event: domain.NotifiedEvent) -> None:
    """One package event's messages recorded: :func:`notify_all` for one event."""
    await notify_all(uow, rules, [event])


async def notify_all(uow: UnitOfWork, rules: NotificationRules, events: Sequence[domain.NotifiedEvent]) -> None:
    """Package events' messages recorded, in the order given, as :func:`notify` would one at a
    time: a delivery row per (event, recipient, channel), and for a placement its
    ``PlacementConfirmed``. The recipients of every event are locked and their contacts read in
    one call for all of them (decision 0151): one statement a consumer batch where there was one
    an event (two a package in the benchmark's burst), and the locks of a batch taken in one
    sorted order, so two batches naming the same recipients cannot deadlock.

    Who is told follows from an event alone (the provider's name only goes into the words):
    the recipients are known before their contacts and names are read."""
    told = [domain.messages_for(e, provider_names={}, providers_url=rules.providers_url) for e in events]
    named = sorted({p for e in events for p in domain.named_providers(e)})
    contacts, names = await repo.locked_contacts(
        uow.conn, [(m.kind, m.recipient_id) for messages in told for m in messages], named=named
    )
    for event in events:
        await _record_messages(uow, rules, event, contacts, names)


async def _record_messages(
    uow: UnitOfWork,
    rules: NotificationRules,
    event: domain.NotifiedEvent,
    contacts: dict[tuple[str, str], domain.Contact],
    names: dict[str, str],
) -> None:
    messages = domain.messages_for(event, provider_names=names, providers_url=rules.providers_url)
    recipients = []
    for message in messages:
        contact = contacts.get((message.kind, message.recipient_id))
        channels = await plan_message(uow, rules, event.event_id, event.event_type, event.package_id, message, contact)
        recipients += [(message.role, message.recipient_id, c) for c in channels]
    if isinstance(event, PackagePlaced):
        await uow.emit(
            PlacementConfirmed(
                correlation_id=event.package_id,
                causation_id=event.event_id,
                package_id=event.package_id,
                provider_id=event.provider_id,
                confirmed_at=clock.now(),
                recipients=[Recipient(kind=k, recipient_id=r, channel=c) for k, r, c in recipients],
            )
        )


async def plan_message(
    uow: UnitOfWork,
    rules: NotificationRules,
    event_id: uuid.UUID,
    event_type: str,
    package_id: uuid.UUID,
    message: domain.Message,
    contact: domain.Contact | None,
) -> list[str]:
    """Record how this message goes to its recipient; returns the channels it was recorded for."""
    plan = domain.plan(message, contact, rules.configured)
    common = dict(event_id=event_id, event_type=event_type, package_id=package_id, m=message)
    if plan.outcome == "nothing":
        return []
    if plan.outcome == "await_contact":
        repo.add_delivery(
            uow,
            **common,
            channel=domain.NO_CHANNEL,
            status="awaiting_contact",
            reason=plan.reason,
            next_attempt_at=clock.now() + rules.contact_grace,
        )
        return [domain.NO_CHANNEL]
    if plan.outcome == "skip":
        repo.add_delivery(uow, **common, channel=domain.NO_CHANNEL, status="skipped", reason=plan.reason)
        return [domain.NO_CHANNEL]
    if plan.outcome == "fail":
        row = await repo.insert_delivery(
            uow.conn, **common, channel=domain.NO_CHANNEL, status="failed", reason=plan.reason, notes=plan.notes
        )
        if row:
            await _emit_failed(
                uow,
                package_id,
                event_id,
                message.message,
                message.role,
                message.recipient_id,
                domain.NO_CHANNEL,
                NotificationFailure.no_usable_channel,
                plan.reason or "",
                row["delivery_id"],
                0,
            )
        return [domain.NO_CHANNEL]
    assert contact is not None
    rendered = rules.templates.render(
        message.message, message.context, language=contact.language, large_print=contact.large_print
    )
    for channel, address in plan.channels:
        repo.add_delivery(
            uow,
            **common,
            channel=channel,
            address=address,
            status="pending",
            rendered=rendered,
            notes=plan.notes + rendered.notes,
        )
    return [channel for channel, _ in plan.channels]


async def register_recipient(
    uow: UnitOfWork, rules: NotificationRules, kind: str, recipient_id: str, values: dict
) -> int:
    """Store a contact; messages that were waiting for it are planned now. Returns how many."""
    await repo.lock_recipients(uow.conn, [(kind, recipient_id)])
    await repo.put_recipient(uow.conn, kind, recipient_id, values)
    waiting = await repo.take_awaiting(uow.conn, kind, recipient_id)
    if not waiting:
        return 0
    contact = await repo.contact(uow.conn, kind, recipient_id)
    for row in waiting:
        message = domain.Message(row["message"], row["recipient_role"], row["recipient_id"], json.loads(row["context"]))
        await plan_message(uow, rules, row["event_id"], row["event_type"], row["package_id"], message, contact)
    return len(waiting)


async def expire_awaiting(uow: UnitOfWork, rules: NotificationRules) -> int:
    """Messages whose recipient registered no contact in time: failed, and said so."""
    rows = await repo.expired_awaiting(uow.conn, rules.batch_size)
    grace = int(rules.contact_grace.total_seconds())
    for row in rows:
        await _fail(
            uow,
            row["id"],
            f"no contact registered for the recipient within {grace} s",
            NotificationFailure.no_contact_registered,
        )
    return len(rows)


async def _fail(uow: UnitOfWork, row_id: int, reason: str, code: NotificationFailure) -> None:
    """The delivery failed for good: ``reason`` (the error's words) stays on its row, ``code`` goes
    on NotificationFailed."""
    row = await repo.mark_failed(uow.conn, row_id, reason)
    if row:  # None: someone else settled it meanwhile
        await _emit_failed(
            uow,
            row["package_id"],
            row["event_id"],
            row["message"],
            row["recipient_role"],
            row["recipient_id"],
            row["channel"],
            code,
            domain.scrub(reason, row["address"]),
            row["delivery_id"],
            row["attempts"],
        )


async def _emit_failed(
    uow: UnitOfWork,
    package_id: uuid.UUID,
    event_id: uuid.UUID,
    message: str,
    role: str,
    recipient_id: str,
    channel: str,
    code: NotificationFailure,
    reason: str,
    delivery_id: uuid.UUID,
    attempts: int,
) -> None:
    metrics.NOTIFICATIONS.labels(channel, "failed").inc()
    log.warning(
        "notification failed",
        package_id=str(package_id),
        message=message,
        recipient_kind=role,
        recipient_id=recipient_id,
        channel=channel,
        code=code.value,
        reason=reason,
        attempts=attempts,
    )
    await uow.emit(
        NotificationFailed(
            correlation_id=package_id,
            causation_id=event_id,
            package_id=package_id,
            delivery_id=delivery_id,
            message=message,
            recipient_kind=role,
            recipient_id=recipient_id,
            channel=channel,
            reason=code,
            attempts=attempts,
            failed_at=clock.now(),
        )
    )


# ---- the dispatcher -------------------------------------------------------------------------


SENT = "sent"  # what _deliver returns for a message that went: dispatch_due marks them together


async def dispatch_due(pool: asyncpg.Pool, rules: NotificationRules, channels: Channels) -> int:
    """Send one batch of due deliveries, each independently: one channel failing or hanging
    holds up no other. Returns how many were tried."""
    async with pool.acquire() as conn:
        rows = await repo.claim_due(conn, limit=rules.batch_size, lease_seconds=rules.lease_seconds)
    outcomes = await asyncio.gather(*(_deliver(pool, rules, channels, row) for row in rows), return_exceptions=True)
    for row, outcome in zip(rows, outcomes, strict=True):
        if isinstance(outcome, BaseException):  # e.g. the database went away: the lease brings it back
            log.warning("could not settle a delivery", delivery_id=str(row["delivery_id"]), error=repr(outcome))
    # The batch's sent messages are marked in one statement (one commit, not one per message);
    # should that fail, their leases run out and they are sent again: at least once, as ever.
    sent = [row for row, outcome in zip(rows, outcomes, strict=True) if outcome is SENT]
    if sent:
        await repo.mark_sent(pool, [row["id"] for row in sent])
    for row in sent:
        metrics.NOTIFICATIONS.labels(row["channel"], "sent").inc()
        log.info(
            "notification sent",
            delivery_id=str(row["delivery_id"]),
            package_id=str(row["package_id"]),
            channel=row["channel"],
            message=row["message"],
            recipient_kind=row["recipient_role"],
            recipient_id=row["recipient_id"],
            attempt=row["attempts"],
        )
    return len(rows)


async def _deliver(pool: asyncpg.Pool, rules: NotificationRules, channels: Channels, row: asyncpg.Record) -> str | None:
    """Send one delivery: SENT when it went (the caller marks it), else settled here (failed or retried)."""
    out = Outgoing(
        delivery_id=str(row["delivery_id"]),
        package_id=str(row["package_id"]),
        message=row["message"],
        channel=row["channel"],
        address=row["address"],
        subject=row["subject"],
        body=row["body"],
        large_print=row["large_print"],
        context=json.loads(row["context"]),
        webhook_secret=row["webhook_secret"],
    )
    attempt = row["attempts"]
    try:
        await asyncio.wait_for(channels.send(out), timeout=rules.lease_seconds / 2)
    except Permanent as exc:
        async with unit_of_work(pool) as uow:
            await _fail(uow, row["id"], str(exc), NotificationFailure.address_refused)
        return None
    except Exception as exc:  # Transient, a timeout, or something unforeseen: try again later
        error = str(exc) if isinstance(exc, Transient) else f"{type(exc).__name__}: {exc}".rstrip(": ")
        if attempt >= rules.max_attempts:
            async with unit_of_work(pool) as uow:
                await _fail(
                    uow, row["id"], f"gave up after {attempt} attempts: {error}", NotificationFailure.retries_exhausted
                )
            return None
        delay = retry_delay(attempt, initial=rules.backoff_initial, maximum=rules.backoff_max, jitter=random.random())
        metrics.NOTIFICATIONS.labels(out.channel, "retried").inc()
        log.info(
            "notification deferred",
            delivery_id=out.delivery_id,
            channel=out.channel,
            attempt=attempt,
            retry_in=round(delay, 2),
            error=domain.scrub(error, out.address),
        )
        await repo.reschedule(pool, row["id"], delay, error)
        return None
    return SENT
