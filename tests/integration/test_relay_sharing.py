"""Outbox relays of several instances share the buckets (decision 0081), on the real PostgreSQL.

Before, the first relay to poll claimed all 16 buckets and the others stood by: one instance did
all the publishing. Now each live relay claims its fair share, starting at its own rank, and the
others take over a dead one's share within the heartbeat's time to live."""

import asyncio
from pathlib import Path

import pytest

from services.runtime.db import create_pool, migrate
from services.runtime.outbox import BUCKETS, Relay
from services.runtime.settings import load


@pytest.fixture
async def pool(database_url):
    settings = load("notifications")
    pool = await create_pool(settings.service_dsn, schema="notifications", application="test-relays", size=6)
    await migrate(pool, "notifications", Path(__file__).resolve().parents[2] / "services/notifications/migrations")
    await pool.execute("DELETE FROM outbox_relays")  # relays of earlier tests, stopped
    yield pool
    await pool.close()


def relay(pool, ttl: float = 10.0) -> Relay:
    return Relay(pool, broker=None, service="notifications", relay_ttl_seconds=ttl)  # type: ignore[arg-type]  # no publishing here


async def claims_at_once(pool, *relays: Relay) -> list[list[int]]:
    """What each relay claims while the others hold theirs (each in a transaction of its own)."""
    conns = [await pool.acquire() for _ in relays]
    try:
        claimed = []
        for conn, r in zip(conns, relays, strict=True):
            await conn.execute("BEGIN")
            claimed.append(sorted(await r.claim_buckets(conn)))
        return claimed
    finally:
        for conn in conns:
            await conn.execute("ROLLBACK")
            await pool.release(conn)


async def test_live_relays_split_the_buckets_between_them(pool):
    a, b, c = relay(pool), relay(pool), relay(pool)
    for r in (a, b, c, a, b):  # each has seen the others
        await r.heartbeat()
    assert [r.share for r in (a, b, c)] == [6, 6, 6]  # ceil(16 / 3)
    claimed = await claims_at_once(pool, a, b, c)
    assert sorted(len(x) for x in claimed) == [4, 6, 6]  # the last takes what is left
    assert sorted(b for x in claimed for b in x) == list(range(BUCKETS)), "every bucket claimed once"


async def test_a_relay_that_stops_being_seen_leaves_its_share_to_the_others(pool):
    a, b = relay(pool, ttl=0.5), relay(pool, ttl=0.5)
    for r in (a, b, a):
        await r.heartbeat()
    assert (a.share, b.share) == (8, 8)
    first, second = await claims_at_once(pool, a, b)
    assert not set(first) & set(second) and len(first) == len(second) == 8
    await asyncio.sleep(0.7)  # b dies: no more heartbeats
    await a.heartbeat()
    assert a.share == BUCKETS
    [alone] = await claims_at_once(pool, a)
    assert alone == list(range(BUCKETS))


async def test_a_relay_that_stops_cleanly_hands_over_at_once(pool):
    a, b = relay(pool), relay(pool)
    for r in (a, b, a):
        await r.heartbeat()
    assert a.share == 8
    await b.stop()  # never started: it only says goodbye
    await a.heartbeat()
    assert a.share == BUCKETS


async def test_a_relay_claims_no_bucket_another_holds(pool):
    a, b = relay(pool), relay(pool)
    await a.heartbeat()  # alone so far: all 16
    async with pool.acquire() as holder, holder.transaction():
        held = await a.claim_buckets(holder)
        assert len(held) == BUCKETS
        await b.heartbeat()
        assert await claims_at_once(pool, b) == [[]]


async def test_a_relay_with_another_bucket_count_publishes_nothing_until_the_relays_agree(pool):
    """Two OUTBOX_BUCKETS at once would put one package's rows in two buckets, published by two
    relays out of order (decision 0115): the relay that sees another count claims nothing."""
    a, b = relay(pool, ttl=0.5), relay(pool, ttl=0.5)
    b.buckets = 8
    for r in (a, b, a):
        await r.heartbeat()
    assert (a.share, b.share) == (0, 0)
    assert await claims_at_once(pool, a, b) == [[], []]
    await asyncio.sleep(0.7)  # b is gone: a is alone with its count again
    await a.heartbeat()
    assert a.share == BUCKETS


async def test_a_relay_refuses_to_start_over_rows_written_with_more_buckets(pool):
    import uuid

    from services.runtime.outbox import OUTBOX_INSERT, BucketCountMismatch

    row = uuid.uuid4()
    await pool.execute(OUTBOX_INSERT, row, "package", "p-1", "PackageRequested", "t", "{}", "{}", BUCKETS - 1)
    try:
        fewer = relay(pool)
        fewer.buckets = BUCKETS // 2
        with pytest.raises(BucketCountMismatch, match=r"1 unpublished outbox row\(s\).*OUTBOX_BUCKETS=8"):
            await fewer.check_buckets()
        await relay(pool).check_buckets()  # the count the row was written with: fine
    finally:
        await pool.execute("DELETE FROM outbox WHERE id = $1", row)
