"""PostgreSQL as the services use it: versioned migrations, and one role per schema."""

import asyncio
from pathlib import Path

import asyncpg
import pytest

from services.runtime.db import RUNTIME_MIGRATIONS, create_pool, migrate, migration_files
from services.runtime.settings import SCHEMA_OWNERS, ServiceName, load

SERVICE_MIGRATIONS = {
    name: Path(__file__).resolve().parents[2] / "services" / name / "migrations" for name in SCHEMA_OWNERS
}


async def pool_for(name: ServiceName) -> asyncpg.Pool:
    settings = load(name)
    return await create_pool(settings.service_dsn, schema=name, application=f"test-{name}", size=3)


@pytest.mark.parametrize("name", SCHEMA_OWNERS)
async def test_migrations_apply_once_even_from_two_processes_at_once(database_url, name):
    pools = [await pool_for(name), await pool_for(name)]
    try:
        results = await asyncio.gather(*(migrate(p, name, SERVICE_MIGRATIONS[name]) for p in pools))
        again = await migrate(pools[0], name, SERVICE_MIGRATIONS[name])
        expected = [v for v, _ in migration_files(RUNTIME_MIGRATIONS, SERVICE_MIGRATIONS[name])]
        applied = await pools[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert sorted(r["version"] for r in applied) == sorted(expected)
        # Exactly one of the two concurrent runs applied everything (or an earlier test had).
        assert sorted(results[0] + results[1]) in (sorted(expected), [])
        assert again == []
    finally:
        for p in pools:
            await p.close()


@pytest.mark.parametrize("reader", SCHEMA_OWNERS)
async def test_a_service_role_cannot_read_or_write_another_services_schema(database_url, reader):
    for name in SCHEMA_OWNERS:
        pool = await pool_for(name)
        await migrate(pool, name, SERVICE_MIGRATIONS[name])
        await pool.close()
    conn = await asyncpg.connect(load(reader).service_dsn)
    try:
        assert await conn.fetchval(f"SELECT count(*) >= 0 FROM {reader}.outbox")  # its own: fine
        for other in SCHEMA_OWNERS:
            if other == reader:
                continue
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM {other}.outbox LIMIT 1")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(f"CREATE TABLE {other}.intruder (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.intruder (id int)")
    finally:
        await conn.close()


async def test_personal_details_live_only_in_the_brokerage_schema(database_url):
    pool = await pool_for("brokerage")
    await migrate(pool, "brokerage", SERVICE_MIGRATIONS["brokerage"])
    await pool.close()
    admin = await asyncpg.connect(database_url)
    try:
        rows = await admin.fetch(
            "SELECT table_schema FROM information_schema.columns WHERE column_name IN ('nhs_number', 'full_name', "
            "'date_of_birth')"
        )
        assert {r["table_schema"] for r in rows} == {"brokerage"}
    finally:
        await admin.close()
