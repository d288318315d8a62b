"""The outbox relay is woken by PostgreSQL when rows commit (LISTEN/NOTIFY, decision 0137), on the
real Kafka and PostgreSQL.

The relays used to ask every 50 ms whether anything was waiting: twenty transactions a second per
service when nothing happens. Now a committed outbox row notifies the schema's channel and an idle
relay looks again only every ``idle_poll_seconds``. These relays' fallback polls are set to a minute,
so only a notification can explain a row published within the tests' waits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from services.operations.outbox import discard_rows, retry_rows
from services.runtime import topics
from services.runtime.db import connect
from services.runtime.kafka import make_broker
from services.runtime.outbox import GATHER_WHILE_WITHIN, Relay, bucket_of
from tests.integration.test_outbox_parking import (  # noqa: F401 (relay_pool: a fixture)
    CONFIRMATIONS,
    SCHEMA,
    as_administrator,
    relay_pool,
    state,
    write,
)

MINUTE = 60.0


async def published(pool: asyncpg.Pool, ids: list[uuid.UUID], within: float = 20.0) -> bool:
    """Whether every row is published within ``within`` seconds (a third of the fallback poll)."""
    for _ in range(int(within / 0.1)):
        if set((await state(pool, ids)).values()) == {"published"}:
            return True
        await asyncio.sleep(0.1)
    return False


async def listening(relay: Relay) -> None:
    for _ in range(100):
        if relay.listening:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the relay never started listening")


@asynccontextmanager
async def started(database_url, relay_pool, relay_class=Relay, **settings) -> AsyncIterator[Relay]:  # noqa: F811
    """A started relay whose fallback polls are a minute apart, handed over once it listens."""
    broker = make_broker(as_administrator())
    await broker.start()
    relay = relay_class(
        relay_pool,
        broker,
        service="relay-test",
        listen=lambda: connect(database_url, schema=SCHEMA, application="relay-test-listen"),
        **({"poll_seconds": MINUTE, "idle_poll_seconds": MINUTE} | settings),
    )
    relay.start()
    try:
        await listening(relay)
        yield relay
    finally:
        await relay.stop()
        await broker.stop()


@pytest.fixture
async def relay(infra, database_url, relay_pool):  # noqa: F811
    async with started(database_url, relay_pool) as relay:
        yield relay


async def test_a_committed_row_wakes_an_idle_relay(relay, relay_pool):  # noqa: F811
    topic = topics.resolve(CONFIRMATIONS)
    await asyncio.sleep(0.5)  # the relay has looked once and is waiting for the next minute
    first = [await write(relay_pool, str(uuid.uuid4()), topic) for _ in range(3)]
    assert await published(relay_pool, first), "the commit's notification woke the relay"
    await asyncio.sleep(0.5)
    again = [await write(relay_pool, str(uuid.uuid4()), topic)]
    assert await published(relay_pool, again), "and the next one, once it is idle again"


async def test_a_relay_whose_listen_connection_is_lost_listens_again(relay, database_url, relay_pool):  # noqa: F811
    topic = topics.resolve(CONFIRMATIONS)
    admin = await asyncpg.connect(database_url)
    try:
        killed = await admin.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE application_name = 'relay-test-listen'"""
        )
    finally:
        await admin.close()
    assert killed == 1
    await asyncio.sleep(1.0)  # it notices, and listens again on a new connection
    await listening(relay)
    await asyncio.sleep(0.5)
    after = [await write(relay_pool, str(uuid.uuid4()), topic)]
    assert await published(relay_pool, after), "woken through the new connection"


class CountingRelay(Relay):
    """A relay that keeps the number of rows each of its batches settled (0: it found none)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    async def publish_batch(self) -> int:
        settled = await super().publish_batch()
        self.batches.append(settled)
        return settled


@pytest.fixture
async def counting_relay(infra, database_url, relay_pool):  # noqa: F811
    """A listening relay that counts its batches."""
    async with started(database_url, relay_pool, CountingRelay) as relay:
        assert isinstance(relay, CountingRelay)
        await settled(relay)  # its first looks are over: it waits for the next commit
        yield relay


async def settled(relay: CountingRelay) -> None:
    """Until the relay has made no batch for half a second."""
    seen = -1
    for _ in range(40):
        if len(relay.batches) == seen:
            return
        seen = len(relay.batches)
        await asyncio.sleep(0.5)
    raise AssertionError(f"the relay never settled: {relay.batches}")


async def test_a_batch_that_was_not_full_is_not_followed_by_a_look_that_finds_nothing(
    counting_relay,
    relay_pool,  # noqa: F811
):
    """Decision 0139: after publishing what it found, the relay waits to be told of the next commit
    (a commit during the batch has told it already) instead of reading again to find nothing."""
    looked = len(counting_relay.batches)
    row = [await write(relay_pool, str(uuid.uuid4()), topics.resolve(CONFIRMATIONS))]
    assert await published(relay_pool, row)
    await asyncio.sleep(1.0)
    assert counting_relay.batches[looked:] == [1], counting_relay.batches


async def test_a_row_in_a_bucket_held_by_another_relay_is_published_once_it_is_let_go(
    database_url,
    relay_pool,  # noqa: F811
):
    """Decision 0139: a commit in a bucket another relay holds at that moment wakes this relay,
    which cannot claim it; no further notification comes when the other lets go. After such a
    contended claim the relay looks again every ``poll_seconds``, not at its idle poll (a minute)."""
    aggregate = str(uuid.uuid4())
    # Another relay whose whole share is the row's bucket (it claims, publishes nothing here).
    other = Relay(relay_pool, broker=None, service="relay-test")  # type: ignore[arg-type]
    other.share, other.first_bucket = 1, bucket_of(aggregate)
    async with started(database_url, relay_pool, poll_seconds=0.2):
        async with relay_pool.acquire() as holder, holder.transaction():
            assert await other.claim_buckets(holder) == [bucket_of(aggregate)]
            row = [await write(relay_pool, aggregate, topics.resolve(CONFIRMATIONS))]
            await asyncio.sleep(1.0)
            assert (await state(relay_pool, row))[row[0]] == "waiting"
        assert await published(relay_pool, row, within=10.0), "published without another commit"


async def test_a_parked_row_retried_by_an_operator_wakes_the_relay(relay, database_url, relay_pool):  # noqa: F811
    """A retried row is an UPDATE, not an INSERT: the retry itself notifies the relays, which try
    it again at once (here Kafka still has no such topic, so it is parked again) - not a minute later."""
    row = await write(relay_pool, str(uuid.uuid4()), "no.such-topic")
    for _ in range(100):
        if (await state(relay_pool, [row]))[row] == "parked":
            break
        await asyncio.sleep(0.1)
    first = await relay_pool.fetchval("SELECT parked_at FROM outbox WHERE id = $1", row)
    assert first is not None
    await retry_rows(database_url, [str(row)], (SCHEMA,))
    again = None
    for _ in range(100):
        again = await relay_pool.fetchval("SELECT parked_at FROM outbox WHERE id = $1", row)
        if again is not None and again > first:
            break
        await asyncio.sleep(0.1)
    assert again is not None and again > first, "tried again within seconds of the retry"
    await discard_rows(database_url, [str(row)], "test cleanup", (SCHEMA,))


@pytest.mark.parametrize(("gather_seconds", "apart"), [(0.0, 0.5), (0.5, 0.05)])
async def test_a_relay_woken_by_commits_in_quick_succession_gathers_the_commits_behind_it(
    infra,
    database_url,
    relay_pool,  # noqa: F811
    gather_seconds,
    apart,
):
    """``relay_gather_seconds`` (decision 0147): a quiet relay woken by a commit publishes it at
    once; woken again soon after (within ten gathers), it waits that long before reading, so that
    the commits close behind go in the same batch (one transaction and one Kafka request for them).
    With none, each commit is a batch of its own when the relay has finished the one before."""
    topic = topics.resolve(CONFIRMATIONS)
    async with started(database_url, relay_pool, CountingRelay, gather_seconds=gather_seconds) as relay:
        assert isinstance(relay, CountingRelay)
        await settled(relay)
        await asyncio.sleep(GATHER_WHILE_WITHIN * gather_seconds)  # quiet for long enough
        looked = len(relay.batches)
        first = [await write(relay_pool, str(uuid.uuid4()), topic)]
        began = asyncio.get_running_loop().time()
        assert await published(relay_pool, first)
        if gather_seconds:  # after a quiet spell: published at once, not after a gather
            assert asyncio.get_running_loop().time() - began < gather_seconds
        rows = []
        for _ in range(3):  # three commits, ``apart`` seconds apart
            rows.append(await write(relay_pool, str(uuid.uuid4()), topic))
            await asyncio.sleep(apart)
        assert await published(relay_pool, rows)
        await asyncio.sleep(1.0)
        found = [n for n in relay.batches[looked:] if n]
        assert found == ([1, 3] if gather_seconds else [1, 1, 1, 1]), relay.batches[looked:]
