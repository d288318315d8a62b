"""A unit of work's deferred rows go in one statement per table (decision 0141), on the real PostgreSQL.

:class:`RowsInsert` unnests one array a column: the rows must arrive in the order given (a serial
column - the outbox's ``seq``, the timeline's ``id`` - numbers them so, and the relay publishes in
``seq`` order), with computed columns, JSON and array columns as the single-row statements wrote
them, and the outbox's statement trigger fired once."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from schemas.events import PackageUnplaced
from services.notifications.repository import _NOTES, DELIVERY_ROWS
from services.runtime.db import RowsInsert
from services.runtime.outbox import UnitOfWork
from tests.support import runtime_schema

NOTES_FROM_JSON = (
    "ARRAY(SELECT n.e FROM jsonb_array_elements_text(t.notes::jsonb) WITH ORDINALITY AS n(e, i) ORDER BY n.i)"
)

NOTES_TABLE = RowsInsert(
    "rows_test",
    (("label", "text"), ("at", "timestamptz"), ("detail", "text"), ("notes", "text")),
    values={
        "at": "coalesce(t.at, now())",
        "detail": "t.detail::jsonb",
        "notes": NOTES_FROM_JSON,
        "flagged": "t.label LIKE 'flag%'",
    },
    suffix="ON CONFLICT (label) DO NOTHING",
)


@pytest.fixture
async def pool(infra, database_url, tmp_path):
    async with runtime_schema(database_url, "rows_insert", tmp_path) as pool:
        await pool.execute(
            """CREATE TABLE rows_test (id bigserial PRIMARY KEY, label text UNIQUE NOT NULL, at timestamptz NOT NULL,
                                       detail jsonb NOT NULL, notes text[] NOT NULL, flagged boolean NOT NULL)"""
        )
        yield pool


async def test_rows_arrive_in_the_order_given_with_their_computed_columns(pool):
    at = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)
    labels = [f"row-{i:03d}" for i in range(200, 0, -1)] + ["flag-1"]  # not in sorted order
    rows = [
        (label, at if i % 2 else None, json.dumps({"n": i}), json.dumps(["a", f"b{i}"]))
        for i, label in enumerate(labels)
    ]
    async with pool.acquire() as conn, conn.transaction():  # one now() throughout
        await NOTES_TABLE.execute(conn, rows)
        await NOTES_TABLE.execute(conn, [("row-005", at, "{}", "[]"), ("new", at, "{}", "[]")])  # a conflict skipped
        await NOTES_TABLE.execute(conn, [])  # nothing to write: no statement
        got = await conn.fetch(
            "SELECT label, at, detail::text, notes, flagged, now() AS now FROM rows_test ORDER BY id"
        )
    assert [r["label"] for r in got] == [*labels, "new"]
    assert got[1]["at"] == at and got[0]["at"] == got[0]["now"]  # coalesce(at, now())
    assert json.loads(got[7]["detail"]) == {"n": 7} and got[7]["notes"] == ["a", "b7"]
    assert [r["label"] for r in got if r["flagged"]] == ["flag-1"]
    assert got[195]["detail"] == '{"n": 195}'  # row-005 kept its first version


def unplaced() -> PackageUnplaced:
    package_id = uuid.uuid4()
    return PackageUnplaced(
        correlation_id=package_id,
        package_id=package_id,
        zone="melton",
        band="rural",
        urgency="community",
        hours_per_week=Decimal(14),
        reason="no_acceptable_bid",
        requested_by="broker.sue",
        unplaced_at=dt.datetime.now(dt.UTC),
    )


async def test_a_unit_of_works_outbox_rows_are_one_statement_in_emit_order(pool):
    # Count the outbox's INSERT statements as its own statement trigger (the relays' wake-up) sees them.
    await pool.execute(
        """CREATE TABLE statements_seen (n int NOT NULL);
           INSERT INTO statements_seen VALUES (0);
           CREATE FUNCTION count_statement() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN UPDATE statements_seen SET n = n + 1; RETURN NULL; END $$;
           CREATE TRIGGER count_statement AFTER INSERT ON outbox
               FOR EACH STATEMENT EXECUTE FUNCTION count_statement();"""
    )
    events = [unplaced() for _ in range(5)]
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn)
        for event in events:
            await uow.emit(event)
        await uow.flush()
    rows = await pool.fetch("SELECT id, aggregateid, payload, headers FROM outbox ORDER BY seq")
    assert [r["id"] for r in rows] == [e.event_id for e in events]
    assert rows[0]["aggregateid"] == str(events[0].package_id)
    assert json.loads(rows[0]["payload"])["package_id"] == str(events[0].package_id)
    assert json.loads(rows[0]["headers"]) == {"correlation_id": str(events[0].correlation_id)}
    assert await pool.fetchval("SELECT n FROM statements_seen") == 1  # one statement for the five rows


async def test_a_flush_writes_every_tables_rows_in_one_statement(pool):
    # Each table's statement trigger notes the statement's start: one statement, one time for both.
    await pool.execute(
        """CREATE TABLE statements_seen (tbl text NOT NULL, started timestamptz NOT NULL);
           CREATE FUNCTION note_statement() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO statements_seen VALUES (TG_TABLE_NAME, statement_timestamp()); RETURN NULL; END $$;
           CREATE TRIGGER note_statement AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION note_statement();
           CREATE TRIGGER note_statement AFTER INSERT ON rows_test
               FOR EACH STATEMENT EXECUTE FUNCTION note_statement();"""
    )
    at = dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)
    events = [unplaced(), unplaced()]
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn)
        uow.defer(NOTES_TABLE, ("first", at, '{"a": 1}', '["x"]'))
        for event in events:
            await uow.emit(event)
        uow.defer(NOTES_TABLE, ("second", None, "{}", "[]"))
        await uow.flush()
        await uow.flush()  # nothing deferred since: no statement
    assert [r["id"] for r in await pool.fetch("SELECT id FROM outbox ORDER BY seq")] == [e.event_id for e in events]
    got = await pool.fetch("SELECT label, at, notes FROM rows_test ORDER BY id")
    assert [(r["label"], r["notes"]) for r in got] == [("first", ["x"]), ("second", [])]
    assert got[0]["at"] == at
    seen = await pool.fetch("SELECT tbl, started FROM statements_seen ORDER BY tbl")
    assert [r["tbl"] for r in seen] == ["outbox", "rows_test"]  # each table's INSERT once
    assert seen[0]["started"] == seen[1]["started"]  # in the same statement


def test_the_delivery_rows_carry_notes_as_json():
    # add_delivery sends a row's notes as JSON text, at the position DELIVERY_ROWS gives them.
    assert DELIVERY_ROWS.columns[_NOTES] == ("notes", "text")
    assert "jsonb_array_elements_text(t.notes::jsonb) WITH ORDINALITY" in DELIVERY_ROWS.statement
