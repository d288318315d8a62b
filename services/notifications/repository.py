"""Notifications' tables (schema ``notifications``). None commits."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from services.notifications.domain import Contact, Message
from services.notifications.templates import Rendered
from services.runtime.db import Connection, RowsInsert
from services.runtime.outbox import UnitOfWork

Conn = Connection | asyncpg.Pool

# ---- recipients ----------------------------------------------------------------------------

RECIPIENT_FIELDS = (
    "name",
    "email",
    "phone",
    "webhook_url",
    "webhook_secret",
    "channels",
    "opted_out",
    "opted_in",
    "large_print",
    "language",
)
RECIPIENT_DEFAULTS = {"channels": [], "opted_out": [], "opted_in": [], "large_print": False, "language": "en"}


def contact_of(row: asyncpg.Record) -> Contact:
    return Contact(
        kind=row["kind"],
        recipient_id=row["recipient_id"],
        name=row["name"],
        email=row["email"],
        phone=row["phone"],
        webhook_url=row["webhook_url"],
        has_webhook_secret=bool(row["webhook_secret"]),
        channels=tuple(row["channels"]),
        opted_out=frozenset(row["opted_out"]),
        opted_in=frozenset(row["opted_in"]),
        large_print=row["large_print"],
        language=row["language"],
    )


def _key_arrays(keys: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(kinds, recipient ids) of these keys, each once, in the fixed order the locks are taken in."""
    ordered = sorted(set(keys))
    return [k for k, _ in ordered], [i for _, i in ordered]


async def lock_recipients(conn: Connection, keys: list[tuple[str, str]]) -> None:
    """Serialise, per recipient, planning a message with registering its contact: otherwise a
    contact registered while a placement is planned could miss the message waiting for it.
    Taken in a fixed order, so two events naming the same recipients cannot deadlock (the SQL
    function of migration 0005, which :func:`locked_contacts` takes them with too)."""
    await conn.execute("SELECT lock_recipients($1::text[], $2::text[])", *_key_arrays(keys))


async def recipient(conn: Conn, kind: str, recipient_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM recipients WHERE kind = $1 AND recipient_id = $2", kind, recipient_id)


async def contact(conn: Conn, kind: str, recipient_id: str) -> Contact | None:
    row = await recipient(conn, kind, recipient_id)
    return None if row is None else contact_of(row)


async def locked_contacts(
    conn: Connection, keys: list[tuple[str, str]], *, named: list[str]
) -> tuple[dict[tuple[str, str], Contact], dict[str, str]]:
    """Lock these (kind, recipient id)s as :func:`lock_recipients` does, then read the contacts of
    those that have one, and the names of the ``named`` providers that gave one: one call
    (migration 0005, decision 0145), where a name read, a lock statement and a contact read were
    three round trips. Returns (contacts by key, names by provider id)."""
    rows = await conn.fetch(
        "SELECT * FROM locked_recipients($1::text[], $2::text[], $3::text[])", *_key_arrays(keys), named
    )
    wanted = set(keys)
    contacts = {(r["kind"], r["recipient_id"]): contact_of(r) for r in rows if (r["kind"], r["recipient_id"]) in wanted}
    names = {
        r["recipient_id"]: r["name"]
        for r in rows
        if r["kind"] == "provider" and r["recipient_id"] in named and r["name"] is not None
    }
    return contacts, names


async def put_recipient(conn: Conn, kind: str, recipient_id: str, values: dict, *, only_if_new: bool = False) -> bool:
    """Register or replace a recipient's contact and preferences; True if written."""
    columns = ", ".join(RECIPIENT_FIELDS)
    params = ", ".join(f"${i}" for i in range(3, 3 + len(RECIPIENT_FIELDS)))
    conflict = (
        "DO NOTHING"
        if only_if_new
        else "DO UPDATE SET " + ", ".join(f"{f} = EXCLUDED.{f}" for f in RECIPIENT_FIELDS) + ", updated_at = now()"
    )
    return bool(
        await conn.fetchval(
            f"""INSERT INTO recipients (kind, recipient_id, {columns}) VALUES ($1, $2, {params})
            ON CONFLICT (kind, recipient_id) {conflict} RETURNING true""",
            kind,
            recipient_id,
            *(values.get(f, RECIPIENT_DEFAULTS.get(f)) for f in RECIPIENT_FIELDS),
        )
    )


# ---- deliveries ----------------------------------------------------------------------------


DELIVERY_INSERT = """INSERT INTO deliveries (delivery_id, event_id, event_type, package_id, message, recipient_role,
                                             recipient_kind, recipient_id, channel, address, context, template, subject,
                                             body, large_print, notes, status, last_error, next_attempt_at, failed_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16, $17, $18,
                             coalesce($19, now()), CASE WHEN $17 = 'failed' THEN now() END)
                     ON CONFLICT (event_id, recipient_role, recipient_id, channel) DO NOTHING"""


def _delivery_args(
    *,
    event_id: uuid.UUID,
    event_type: str,
    package_id: uuid.UUID,
    m: Message,
    channel: str,
    status: str,
    address: str | None = None,
    rendered: Rendered | None = None,
    notes: tuple[str, ...] = (),
    reason: str | None = None,
    next_attempt_at: dt.datetime | None = None,
) -> tuple:
    return (
        uuid.uuid4(),
        event_id,
        event_type,
        package_id,
        m.message,
        m.role,
        m.kind,
        m.recipient_id,
        channel,
        address,
        json.dumps(m.context),
        rendered.template if rendered else None,
        rendered.subject if rendered else None,
        rendered.body if rendered else None,
        bool(rendered and rendered.large_print),
        list(notes),
        status,
        reason,
        next_attempt_at,
    )


async def insert_delivery(conn: Conn, **fields: Any) -> asyncpg.Record | None:
    """One row per (event, recipient, channel); None when it was there already (a redelivery)."""
    return await conn.fetchrow(DELIVERY_INSERT + " RETURNING delivery_id, status, attempts", *_delivery_args(**fields))


# DELIVERY_INSERT for many rows in one statement (decision 0141). ``notes`` is an array column, which
# unnest cannot carry: it travels as a JSON list.
DELIVERY_ROWS = RowsInsert(
    "deliveries",
    (
        ("delivery_id", "uuid"),
        ("event_id", "uuid"),
        ("event_type", "text"),
        ("package_id", "uuid"),
        ("message", "text"),
        ("recipient_role", "text"),
        ("recipient_kind", "text"),
        ("recipient_id", "text"),
        ("channel", "text"),
        ("address", "text"),
        ("context", "text"),
        ("template", "text"),
        ("subject", "text"),
        ("body", "text"),
        ("large_print", "boolean"),
        ("notes", "text"),
        ("status", "text"),
        ("last_error", "text"),
        ("next_attempt_at", "timestamptz"),
    ),
    values={
        "context": "t.context::jsonb",
        "notes": (
            "ARRAY(SELECT n.e FROM jsonb_array_elements_text(t.notes::jsonb) WITH ORDINALITY AS n(e, i) ORDER BY n.i)"
        ),
        "next_attempt_at": "coalesce(t.next_attempt_at, now())",
        "failed_at": "CASE WHEN t.status = 'failed' THEN now() END",
    },
    suffix="ON CONFLICT (event_id, recipient_role, recipient_id, channel) DO NOTHING",
)
_NOTES = DELIVERY_ROWS.names.index("notes")


def add_delivery(uow: UnitOfWork, **fields: Any) -> None:
    """:func:`insert_delivery` for a row nothing in the transaction needs back: written with the
    unit of work's other rows at its end (a redelivered event's rows change nothing, as above)."""
    row = list(_delivery_args(**fields))  # the columns of DELIVERY_ROWS, in order
    row[_NOTES] = json.dumps(row[_NOTES])
    uow.defer(DELIVERY_ROWS, tuple(row))


async def take_awaiting(conn: Conn, kind: str, recipient_id: str) -> list[asyncpg.Record]:
    """Messages that were waiting for this recipient's contact, removed to be planned afresh."""
    return await conn.fetch(
        """DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE status = 'awaiting_contact'
                                                 AND recipient_kind = $1 AND recipient_id = $2 FOR UPDATE)
           RETURNING event_id, event_type, package_id, message, recipient_role, recipient_id, context::text AS
               context""",
        kind,
        recipient_id,
    )


async def claim_due(conn: Conn, *, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    """Due deliveries, each counted as an attempt and leased: a dispatcher that dies holding one
    leaves it to be tried again when the lease runs out. Committed before sending."""
    return await conn.fetch(
        """UPDATE deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
             FROM (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()
                    ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
            WHERE d.id = due.id
        RETURNING d.id, d.delivery_id, d.package_id, d.event_type, d.message, d.recipient_role, d.recipient_kind,
                  d.recipient_id, d.channel, d.address, d.context::text AS context, d.subject, d.body, d.large_print,
                  d.attempts,
                  (SELECT webhook_secret FROM recipients r WHERE r.kind = d.recipient_kind AND r.recipient_id =
                      d.recipient_id)
                      AS webhook_secret""",
        limit,
        lease_seconds,
    )


async def mark_sent(conn: Conn, row_ids: list[int]) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'sent', sent_at = now(), last_error = NULL "
        "WHERE id = ANY($1::bigint[]) AND status = 'pending'",
        row_ids,
    )


async def reschedule(conn: Conn, row_id: int, delay_seconds: float, error: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3 "
        "WHERE id = $1 AND status = 'pending'",
        row_id,
        delay_seconds,
        error,
    )


async def mark_failed(conn: Conn, row_id: int, reason: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """UPDATE deliveries SET status = 'failed', failed_at = now(), last_error = $2
            WHERE id = $1 AND status IN ('pending', 'awaiting_contact')
        RETURNING delivery_id, event_id, package_id, message, recipient_role, recipient_id, channel, address,
            attempts""",
        row_id,
        reason,
    )


async def expired_awaiting(conn: Conn, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id FROM deliveries WHERE status = 'awaiting_contact' AND next_attempt_at <= now()
            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )


async def deliveries_for(conn: Conn, package_id: uuid.UUID, event_type: str | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT delivery_id, event_type, message, recipient_role, recipient_id, channel, status, attempts,
                  last_error AS reason, notes, template, subject, body, large_print, created_at, sent_at, failed_at
             FROM deliveries WHERE package_id = $1 AND ($2::text IS NULL OR event_type = $2) ORDER BY id""",
        package_id,
        event_type,
    )


async def failed_deliveries(conn: Conn, limit: int) -> tuple[int, list[asyncpg.Record]]:
    """How many deliveries failed for good, and the latest ``limit`` of them (newest first)."""
    count = await conn.fetchval("SELECT count(*) FROM deliveries WHERE status = 'failed'")
    rows = await conn.fetch(
        """SELECT delivery_id, package_id, event_type, message, recipient_role, channel, attempts,
                  last_error AS reason, created_at, failed_at
             FROM deliveries WHERE status = 'failed' ORDER BY failed_at DESC NULLS LAST, id DESC LIMIT $1""",
        limit,
    )
    return count, rows
