"""The outbox rows Kafka refused for good (parked), and what to do with them: ``homecare outbox``
lists, retries and discards them.

A relay parks a row Kafka will never take (too large, topic unknown or not writable, record
invalid) instead of retrying it forever; the rows behind it are published, except the later
rows of the same package (or provider), which wait behind it so its events stay in order.
Fix the cause (raise the topic's max.message.bytes, create the topic, grant the ACL), then
``retry`` the row; or ``discard`` it, accepting that its event is never published, which
releases the rows waiting behind it. See docs/guide/dead-letters.md.
"""

from __future__ import annotations

import re

import asyncpg

from services.runtime.settings import SERVICES

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]*$")

PARKED = """
    SELECT o.id::text AS id, o.seq, o.aggregatetype, o.aggregateid, o.type, o.topic,
           octet_length(o.payload::text) AS payload_bytes, o.created_at, o.parked_at, o.park_error,
           (SELECT count(*) FROM {schema}.outbox h
             WHERE h.aggregatetype = o.aggregatetype AND h.aggregateid = o.aggregateid AND h.seq > o.seq
               AND h.published_at IS NULL AND h.parked_at IS NULL AND h.discarded_at IS NULL) AS held
      FROM {schema}.outbox o
     WHERE o.parked_at IS NOT NULL AND o.published_at IS NULL AND o.discarded_at IS NULL
     ORDER BY o.seq"""
RETRY = """UPDATE {schema}.outbox SET parked_at = NULL, park_error = NULL
            WHERE id = ANY($1::uuid[]) AND parked_at IS NOT NULL AND published_at IS NULL AND discarded_at IS NULL
        RETURNING id::text"""
DISCARD = """UPDATE {schema}.outbox SET discarded_at = now(), discarded_by = $2
              WHERE id = ANY($1::uuid[]) AND parked_at IS NOT NULL AND published_at IS NULL AND discarded_at IS NULL
          RETURNING id::text"""


def _sql(statement: str, schema: str) -> str:
    if not _SCHEMA.match(schema):
        raise ValueError(f"not a schema name: {schema!r}")
    return statement.format(schema=schema)


async def parked_rows(dsn: str, schemas: tuple[str, ...] = SERVICES) -> list[dict]:
    """Every parked row of the services' outboxes, oldest first: ``service, id, seq, aggregate,
    type, topic, payload_bytes, created_at, parked_at, error, held`` (rows waiting behind it)."""
    conn = await asyncpg.connect(dsn)
    found = []
    try:
        for schema in schemas:
            try:
                rows = await conn.fetch(_sql(PARKED, schema))
            except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
                continue  # a service not migrated yet: nothing parked there
            for r in rows:
                found.append(
                    {
                        "service": schema,
                        "id": r["id"],
                        "seq": r["seq"],
                        "aggregate": f"{r['aggregatetype']}:{r['aggregateid']}",
                        "type": r["type"],
                        "topic": r["topic"],
                        "payload_bytes": r["payload_bytes"],
                        "created_at": r["created_at"].isoformat(),
                        "parked_at": r["parked_at"].isoformat(),
                        "error": r["park_error"],
                        "held": r["held"],
                    }
                )
    finally:
        await conn.close()
    return found


async def _update(dsn: str, statement: str, ids: list[str], args: tuple, schemas: tuple[str, ...]) -> list[str]:
    conn = await asyncpg.connect(dsn)
    done: list[str] = []
    try:
        async with conn.transaction():
            for schema in schemas:
                try:
                    async with conn.transaction():  # a savepoint: a schema not migrated yet spoils nothing
                        changed = [r["id"] for r in await conn.fetch(_sql(statement, schema), ids, *args)]
                    if changed:
                        # Wake the schema's relays when this commits (decision 0137's channel): a row
                        # let go - retried, or discarded with rows held behind it - is not an INSERT.
                        await conn.execute("SELECT pg_notify($1, '')", f"outbox:{schema}")
                    done += changed
                except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
                    continue
            unknown = sorted(set(ids) - set(done))
            if unknown:
                raise LookupError(f"not a parked outbox row: {', '.join(unknown)}")
    finally:
        await conn.close()
    return done


async def retry_rows(dsn: str, ids: list[str], schemas: tuple[str, ...] = SERVICES) -> list[str]:
    """Unpark these rows: their relay tries them again (and parks them again if Kafka still refuses).
    LookupError (nothing changed) if an id is not a parked row."""
    return await _update(dsn, RETRY, ids, (), schemas)


async def discard_rows(dsn: str, ids: list[str], by: str, schemas: tuple[str, ...] = SERVICES) -> list[str]:
    """Give these parked rows up (who decided, recorded): their events are never published, and
    the rows waiting behind them go. LookupError (nothing changed) if an id is not a parked row."""
    return await _update(dsn, DISCARD, ids, (by,), schemas)
