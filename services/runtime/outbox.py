"""The unit of work and the outbox relay: a state change and its events commit together.

A handler gets a :class:`UnitOfWork`: one connection, one transaction. ``await uow.emit(event)``
writes the event to the ``outbox`` table in that same transaction, so either the change and
its events are both committed or neither is. The :class:`Relay` then publishes committed rows
to Kafka with the service's idempotent producer (acks=all), keyed by the aggregate id, and
marks them published. A crash between publish and mark republishes the same event id, which
consumers' inboxes absorb.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

import asyncpg

from schemas.events import Event
from services.runtime.db import Connection, backoff_delays
from services.runtime.logging import get_logger
from services.runtime.topics import topic_of

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

    from services.runtime.consumer import Delivery

log = get_logger(__name__)

BUCKETS = 16  # relay parallelism: at most this many relays can share the work usefully


def bucket_of(aggregate_id: str) -> int:
    return zlib.crc32(aggregate_id.encode()) % BUCKETS


OUTBOX_INSERT = """INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, headers, bucket)
                   VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)"""


class UnitOfWork:
    """One transaction: the handler's effects, the inbox record and the outbox rows.

    Rows that nothing reads back inside the transaction - the outbox's, a package's timeline - are
    written together at its end by :meth:`flush` (one pipelined round trip per kind of row), not
    one statement each: round trips to PostgreSQL were most of a consumer's cost under load. Whoever
    opens the transaction flushes before committing (:func:`unit_of_work`, the consumers)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.emitted: list[Event] = []
        self._deferred: dict[str, list[tuple[Any, ...]]] = {}

    async def emit(self, event: Event, *, aggregate_type: str | None = None) -> None:
        aggregate_type = aggregate_type or ("provider" if event.event_type == "ProviderUpdated" else "package")
        self.defer(
            OUTBOX_INSERT,
            (
                event.event_id,
                aggregate_type,
                event.key,
                event.event_type,
                topic_of(event),
                event.model_dump_json(),
                json.dumps({"correlation_id": str(event.correlation_id)}),
                bucket_of(event.key),
            ),
        )
        self.emitted.append(event)

    def defer(self, statement: str, args: tuple[Any, ...]) -> None:
        """Write this row at the end of the transaction, in order with the others of its statement."""
        self._deferred.setdefault(statement, []).append(args)

    async def flush(self) -> None:
        deferred, self._deferred = self._deferred, {}
        for statement, rows in deferred.items():
            await self.conn.executemany(statement, rows)


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool) -> AsyncIterator[UnitOfWork]:
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn)
        yield uow
        await uow.flush()


async def record_in_inbox(
    conn: Connection, *, consumer: str, deliveries: Sequence[tuple[Event, Delivery]]
) -> set[uuid.UUID]:
    """Record ``[(event, delivery), ...]`` as seen by this consumer, in one statement: the ids of
    the events seen for the first time (a redelivered one is not among them)."""
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, event_id, event_type, topic, kafka_partition, kafka_offset)
           SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[], $6::bigint[])
           ON CONFLICT DO NOTHING RETURNING event_id""",
        consumer,
        [e.event_id for e, _ in deliveries],
        [e.event_type for e, _ in deliveries],
        [d.topic for _, d in deliveries],
        [d.partition for _, d in deliveries],
        [d.offset for _, d in deliveries],
    )
    return {r["event_id"] for r in rows}


class Relay:
    """Publishes committed outbox rows in order per aggregate; any number may run at once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        *,
        service: str,
        batch_size: int = 200,
        poll_seconds: float = 0.05,
        retention_seconds: int = 3600,
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.service = service
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.retention_seconds = retention_seconds
        self.published = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"{self.service}-outbox-relay")

    async def stop(self) -> None:
        """Finish the batch in hand, then return."""
        self._stopping.set()
        if self._task:
            await self._task

    async def run(self) -> None:
        delays = backoff_delays(0.2, 10.0)
        last_cleanup = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                sent = await self.publish_batch()
                delays = backoff_delays(0.2, 10.0)  # healthy again: reset the backoff
                if loop.time() - last_cleanup > 60:
                    await self.clean_up()
                    last_cleanup = loop.time()
                if sent == 0:
                    await self._sleep(self.poll_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or Kafka is away: rows stay, try again later
                delay = next(delays)
                log.warning("outbox relay failed; will retry", error=repr(exc), retry_in=round(delay, 2))
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def publish_batch(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            # First claim buckets (an advisory lock each, held until this transaction ends),
            # then read their rows in a second statement. The split matters: the second
            # statement's snapshot is taken after the buckets' previous holder committed, so
            # it sees every row that relay left behind, and one aggregate's events - which
            # share a bucket - are only ever published by one relay at a time, in seq order.
            buckets = await conn.fetchval(
                """SELECT coalesce(array_agg(b), '{}') FROM generate_series(0, $1 - 1) AS b
                        WHERE pg_try_advisory_xact_lock(hashtext(current_schema() || ':outbox'), b)""",
                BUCKETS,
            )
            if not buckets:
                return 0
            rows = await conn.fetch(
                """SELECT id, aggregateid, type, topic, payload::text AS payload, headers::text AS headers
                         FROM outbox
                        WHERE published_at IS NULL AND bucket = ANY($2::smallint[])
                        ORDER BY seq
                        LIMIT $1""",
                self.batch_size,
                buckets,
            )
            if not rows:
                return 0
            futures = []
            for row in rows:
                headers = json.loads(row["headers"])
                futures.append(
                    await self.broker.publish(
                        row["payload"].encode(),
                        topic=row["topic"],
                        key=row["aggregateid"].encode(),
                        headers={
                            "content-type": "application/json",
                            "event_type": row["type"],
                            "event_id": str(row["id"]),
                            "producer": self.service,
                            **headers,
                        },
                        correlation_id=headers.get("correlation_id"),
                        no_confirm=True,
                    )
                )
            # Every send must be acknowledged (acks=all) before the rows are marked; if one
            # fails the transaction rolls back and the whole batch is sent again later.
            await asyncio.gather(*futures)
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])", [r["id"] for r in rows]
            )
        self.published += len(rows)
        return len(rows)

    async def clean_up(self) -> None:
        """Published rows are kept a while for inspection, then removed: the table stays small."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
                float(self.retention_seconds),
            )
            await conn.execute("DELETE FROM inbox WHERE processed_at < now() - interval '14 days'")

    @staticmethod
    async def backlog(pool: asyncpg.Pool) -> int:
        """Outbox rows not yet published."""
        return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
