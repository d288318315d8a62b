"""The disclosure log cannot be tampered with by the service that writes it: it lives in the
audit schema, owned by a NOLOGIN role, and the brokerage's own database role may only add rows
and read them (services/runtime/provisioning/audit.sql)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.runtime.db import create_pool, migrate
from services.runtime.settings import load

pytestmark = pytest.mark.infra

BROKERAGE_MIGRATIONS = __import__("pathlib").Path(__file__).resolve().parents[2] / "services/brokerage/migrations"

TAMPERING = [
    "DELETE FROM disclosures",
    "DELETE FROM audit.disclosures",
    "UPDATE audit.disclosures SET staff_user = 'someone else'",
    "TRUNCATE audit.disclosures",
    "ALTER TABLE audit.disclosures DISABLE TRIGGER ALL",
    "DROP TRIGGER disclosures_no_update ON audit.disclosures",
    "DROP TABLE audit.disclosures CASCADE",
    "ALTER TABLE audit.disclosures OWNER TO brokerage",
    "SET ROLE homecare_audit",
]


@pytest.fixture
async def brokerage_conn(database_url):
    settings = load("brokerage")
    pool = await create_pool(settings.service_dsn, schema="brokerage", application="test-audit", size=2)
    await migrate(pool, "brokerage", BROKERAGE_MIGRATIONS)
    try:
        async with pool.acquire() as conn:
            yield conn
    finally:
        await pool.close()


async def test_the_brokerage_role_adds_and_reads_disclosures(brokerage_conn):
    package_id = uuid.uuid4()
    row = await brokerage_conn.fetchrow(
        "INSERT INTO disclosures (package_id, reader, staff_user, fields) VALUES ($1, 'staff', 'broker.amy', $2) "
        "RETURNING disclosure_id, staff_user",
        package_id,
        ["full_name"],
    )
    assert row["staff_user"] == "broker.amy"
    assert await brokerage_conn.fetchval("SELECT count(*) FROM disclosures WHERE package_id = $1", package_id) == 1


@pytest.mark.parametrize("statement", TAMPERING)
async def test_the_brokerage_role_cannot_tamper_with_the_log(brokerage_conn, statement):
    package_id = uuid.uuid4()
    await brokerage_conn.execute(
        "INSERT INTO disclosures (package_id, reader, staff_user, fields) VALUES ($1, 'staff', 'broker.amy', $2)",
        package_id,
        ["full_name"],
    )
    with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.RaiseError)):
        await brokerage_conn.execute(statement)
    assert await brokerage_conn.fetchval("SELECT count(*) FROM disclosures WHERE package_id = $1", package_id) == 1
