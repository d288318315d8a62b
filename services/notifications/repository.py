"""Notifications' tables (schema ``notifications``). None commits."""

from __future__ import annotations

import uuid

import asyncpg

from services.notifications.domain import Confirmation


async def insert_confirmation(conn: asyncpg.Connection, package_id: uuid.UUID, event_id: uuid.UUID, c: Confirmation) -> bool:
    return bool(await conn.fetchval(
        """INSERT INTO confirmations (package_id, event_id, recipient_kind, recipient_id, channel, subject, body)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (package_id, recipient_kind, recipient_id, channel) DO NOTHING RETURNING true""",
        package_id, event_id, c.recipient_kind, c.recipient_id, c.channel, c.subject, c.body,
    ))


async def confirmations_for(conn: asyncpg.Connection | asyncpg.Pool, package_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT recipient_kind, recipient_id, channel, subject, body, status, created_at FROM confirmations "
        "WHERE package_id = $1 ORDER BY id", package_id,
    )
