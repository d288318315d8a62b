"""What an API does when PostgreSQL aborts its transaction for a conflict with another one.

A deadlock (40P01) or a serialization failure (40001) is not an outage: PostgreSQL's manual says
to run the transaction again. ``run_in_unit_of_work`` does, so a caller never gets the 503 the
racing brokerage test met in CI (2026-11-30) for a conflict a second try settles."""

import asyncio

import asyncpg
import pytest

from services.runtime.db import create_pool, migrate
from services.runtime.outbox import UnitOfWork, run_in_unit_of_work
from services.runtime.settings import load
from tests.integration.test_database import SERVICE_MIGRATIONS


@pytest.fixture
async def pool(database_url):
    settings = load("brokerage")
    pool = await create_pool(settings.service_dsn, schema="brokerage", application="test-conflicts", size=4)
    await migrate(pool, "brokerage", SERVICE_MIGRATIONS["brokerage"])
    yield pool
    await pool.close()


async def opposite_orders(pool: asyncpg.Pool, *, attempts: int) -> tuple[list[str], list[str]]:
    """Two commands taking two locks in opposite orders, each waiting until the other holds its
    first: PostgreSQL detects the deadlock (after deadlock_timeout) and aborts one of them."""
    first_held = {"a": asyncio.Event(), "b": asyncio.Event()}
    tries: dict[str, list[str]] = {"a": [], "b": []}

    def command(me: str, other: str, locks: tuple[int, int]):
        async def run(uow: UnitOfWork) -> str:
            tries[me].append("try")
            await uow.conn.execute("SELECT pg_advisory_xact_lock(7001, $1)", locks[0])
            first_held[me].set()
            if len(tries[me]) == 1:  # only the first try waits for the other: a rerun goes straight through
                await first_held[other].wait()
            await uow.conn.execute("SELECT pg_advisory_xact_lock(7001, $1)", locks[1])
            return me

        return run

    results = await asyncio.gather(
        run_in_unit_of_work(pool, command("a", "b", (1, 2)), attempts=attempts),
        run_in_unit_of_work(pool, command("b", "a", (2, 1)), attempts=attempts),
        return_exceptions=True,
    )
    return list(map(repr, results)), [f"{k}:{len(v)}" for k, v in sorted(tries.items())]


async def test_a_deadlocked_command_is_run_again_and_both_complete(pool):
    results, tries = await opposite_orders(pool, attempts=4)
    assert results == ["'a'", "'b'"]
    assert sorted(tries) in (["a:1", "b:2"], ["a:2", "b:1"])  # one of them was aborted once and rerun


async def test_without_a_second_try_the_deadlock_reaches_the_caller(pool):
    results, _ = await opposite_orders(pool, attempts=1)
    assert sum("DeadlockDetectedError" in r for r in results) == 1
