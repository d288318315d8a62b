"""The relay's reads of the outbox get the plan a queue needs (decision 0138), on the real PostgreSQL.

The outbox's index of unpublished rows is mostly entries for dead row versions until vacuum runs. A
plain index scan in seq order learns which entries are dead and stops at its LIMIT; a bitmap scan
visits every dead row's page on every read. PostgreSQL picks the bitmap scan (and a sequential scan
for the update) while its statistics describe the table as small: a new database's first minutes, the
state these tests make. In the relay's transaction - after its first statement, the claim of its
buckets, which also sets the plan settings - it must not."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from services.runtime.db import Connection
from services.runtime.outbox import (
    OUTBOX_INSERT,
    RELAY_CLAIM_BUCKETS,
    RELAY_MARK_PUBLISHED,
    RELAY_NEXT_ROWS,
    bucket_of,
)
from tests.support import runtime_schema

ALL_BUCKETS = list(range(16))


@pytest.fixture
async def young_outbox(infra, database_url, tmp_path):
    """A new schema's outbox, never analyzed, holding 2,000 published rows and 20 waiting ones."""
    async with runtime_schema(database_url, "relay_plans", tmp_path) as pool:
        await pool.execute("ALTER TABLE outbox SET (autovacuum_enabled = off)")  # keep it unanalyzed
        rows = []
        for _ in range(2_020):
            event_id, aggregate = uuid.uuid4(), str(uuid.uuid4())
            payload = json.dumps({"event_id": str(event_id), "pad": "x" * 200})
            rows.append((event_id, "package", aggregate, "RelayTest", "t", payload, "{}", bucket_of(aggregate)))
        await pool.executemany(OUTBOX_INSERT, rows)
        await pool.execute("UPDATE outbox SET published_at = now() WHERE seq <= (SELECT min(seq) + 1999 FROM outbox)")
        yield pool


def scans(plan: dict) -> list[tuple[str, str | None]]:
    """(node type, index name) of every scan of the outbox in an EXPLAIN (FORMAT JSON) plan."""
    found = []
    stack = [plan["Plan"]]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == "outbox" and node["Node Type"].endswith("Scan"):
            found.append((node["Node Type"], node.get("Index Name")))
        stack.extend(node.get("Plans", []))
    return found


async def claim_all(conn: Connection) -> list[int]:
    """The relay's first statement in its transaction, as one relay holding every bucket runs it."""
    return list(await conn.fetchval(RELAY_CLAIM_BUCKETS, len(ALL_BUCKETS), 0, len(ALL_BUCKETS)))


async def plan_of(
    pool: asyncpg.Pool, statement: str, *args: object, claimed: bool = True
) -> list[tuple[str, str | None]]:
    async with pool.acquire() as conn, conn.transaction():
        if claimed:
            assert await claim_all(conn) == ALL_BUCKETS
        explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *args)
    return scans(json.loads(explained)[0])


async def test_without_the_settings_postgresql_reads_a_young_outbox_by_a_bitmap_scan(young_outbox):
    """The premise (PostgreSQL 15): what the relay's settings rule out is what it would choose here."""
    plan = await plan_of(young_outbox, RELAY_NEXT_ROWS, 100, ALL_BUCKETS, claimed=False)
    assert ("Bitmap Heap Scan", None) in plan, plan


async def test_the_relay_reads_the_waiting_rows_by_an_index_scan_in_seq_order(young_outbox):
    plan = await plan_of(young_outbox, RELAY_NEXT_ROWS, 100, ALL_BUCKETS)
    assert ("Index Scan", "outbox_unpublished") in plan
    assert not [node for node, _ in plan if node in ("Bitmap Heap Scan", "Seq Scan")], plan


async def test_the_relay_marks_rows_published_through_the_primary_key(young_outbox):
    ids = [r["id"] for r in await young_outbox.fetch("SELECT id FROM outbox WHERE published_at IS NULL")]
    plan = await plan_of(young_outbox, RELAY_MARK_PUBLISHED, ids)
    assert plan and all(index == "outbox_pkey" for _, index in plan), plan


async def test_the_settings_last_only_for_the_relays_transaction(young_outbox):
    async with young_outbox.acquire() as conn:
        async with conn.transaction():
            await claim_all(conn)
            assert await conn.fetchval("SHOW enable_seqscan") == "off"
            assert await conn.fetchval("SHOW enable_bitmapscan") == "off"
        # The pool's connections are shared with the consumers: nothing may outlive the batch.
        assert await conn.fetchval("SHOW enable_seqscan") == "on"
        assert await conn.fetchval("SHOW enable_bitmapscan") == "on"
