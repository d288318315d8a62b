"""The unit of work and the outbox relay: a state change and its events commit together.

A handler gets a :class:`UnitOfWork`: one connection, one transaction. ``await uow.emit(event)``
writes the event to the ``outbox`` table in that same transaction, so either the change and
its events are both committed or neither is. The :class:`Relay` then publishes committed rows
to Kafka with the service's idempotent producer (acks=all), keyed by the aggregate id, and
marks them published. A crash between publish and mark republishes the same event id, which
consumers' inboxes absorb. A row Kafka refuses for good is parked rather than retried forever
(:class:`Relay`; docs/guide/dead-letters.md, docs/decisions/0031).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import socket
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from aiokafka import errors
from aiokafka.structs import RecordMetadata

from schemas.events import Event
from services.runtime import idempotency, metrics
from services.runtime.db import Connection, RowsInsert, backoff_delays, fetch_one, insert_rows
from services.runtime.kafka_errors import describe, is_permanent, refused_for_good
from services.runtime.logging import get_logger
from services.runtime.topics import all_topics, topic_of

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

    from services.runtime.consumer import Delivery

log = get_logger(__name__)

T = TypeVar("T")

# Relay parallelism: at most this many relays can share the work usefully. The setting
# OUTBOX_BUCKETS (services/runtime/settings.py) replaces the default when a service starts
# (configure_buckets); every instance of a service must use the same count (decision 0115).
DEFAULT_BUCKETS = 16
BUCKETS = DEFAULT_BUCKETS


def configure_buckets(count: int) -> None:
    """Use ``count`` buckets in this process (from the OUTBOX_BUCKETS setting, 1-1024), before any
    row is written or relayed."""
    global BUCKETS
    if not 1 <= count <= 1024:
        raise ValueError(f"OUTBOX_BUCKETS must be 1 to 1024, not {count}")
    BUCKETS = count


def bucket_of(aggregate_id: str) -> int:
    """The bucket of an aggregate's rows: its events keep their order because one relay at a
    time publishes a bucket."""
    return zlib.crc32(aggregate_id.encode()) % BUCKETS


class BucketCountMismatch(RuntimeError):
    """The outbox holds rows, or live relays use a count, of another OUTBOX_BUCKETS."""


OUTBOX_INSERT = """INSERT INTO outbox (id, aggregatetype, aggregateid, type, topic, payload, headers, bucket)
                   VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)"""


# The outbox rows of a unit of work, written in one statement at its end (decision 0141).
OUTBOX_ROWS = RowsInsert(
    "outbox",
    (
        ("id", "uuid"),
        ("aggregatetype", "text"),
        ("aggregateid", "text"),
        ("type", "text"),
        ("topic", "text"),
        ("payload", "text"),
        ("headers", "text"),
        ("bucket", "smallint"),
    ),
    values={"payload": "t.payload::jsonb", "headers": "t.headers::jsonb"},
)


# The relay's reads and writes of the outbox, and the plans they must get (decision 0138). The
# outbox is a queue: every row is inserted, then marked published within milliseconds, so its index of
# unpublished rows is mostly entries for dead row versions until vacuum clears them. A plain index
# scan in seq order marks each dead entry it meets as dead and skips it from then on, and stops at the
# LIMIT; a bitmap scan can do neither and visits every dead row's page on every read (2-4 ms a batch
# in the benchmark, against 0.05 ms). PostgreSQL chooses the bitmap scan - or, for the update, a
# sequential scan - when its statistics still describe the table as small, as they do for the first
# minutes of a new database and between autovacuum's looks. The relay's transaction turns both off
# for itself (``set_config(..., true)`` is ``SET LOCAL``) in its first statement, the claim of its
# buckets below: one round trip, where a SET of their own was a second.

# The buckets ($1 of them) this relay can lock now, from its first ($2) on, at most its share ($3):
# an advisory lock each, held until the transaction ends. OFFSET 0 keeps the ordered buckets a
# subquery of their own (not pulled up into one scan), so the lock function is called row by row,
# in this order, until the LIMIT is met - not on every bucket before the sort. The relay's plan
# settings are set in the same statement (evaluated once: one row).
RELAY_CLAIM_BUCKETS = """SELECT coalesce(array_agg(b), '{}'),
                                set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)
                           FROM (SELECT b FROM (SELECT b FROM generate_series(0, $1 - 1) AS b
                                                 ORDER BY (b - $2 + $1) % $1 OFFSET 0) o
                                  WHERE pg_try_advisory_xact_lock(hashtext(current_schema() || ':outbox'), b)
                                  LIMIT $3) claimed"""
# Rows behind a parked row of their aggregate wait for it (retried or discarded).
RELAY_NEXT_ROWS = """SELECT id, aggregatetype, aggregateid, type, topic, payload::text AS payload,
                            headers::text AS headers
                       FROM outbox o
                      WHERE published_at IS NULL AND parked_at IS NULL AND discarded_at IS NULL
                        AND bucket = ANY($2::smallint[])
                        AND NOT EXISTS (SELECT 1 FROM outbox p
                                         WHERE p.parked_at IS NOT NULL AND p.published_at IS NULL
                                           AND p.discarded_at IS NULL AND p.aggregatetype = o.aggregatetype
                                           AND p.aggregateid = o.aggregateid AND p.seq < o.seq)
                      ORDER BY seq
                      LIMIT $1"""
RELAY_MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])"
# A relay woken by a commit gathers the commits behind it only while they come this many gathers
# apart or closer (decision 0147): a quiet system's commit is published at once.
GATHER_WHILE_WITHIN = 10


class UnitOfWork:
    """One transaction: the handler's effects, the inbox record and the outbox rows.

    Rows that nothing reads back inside the transaction - the outbox's, a package's timeline - are
    written together at its end by :meth:`flush`, in one statement (:class:`RowsInsert`), not one
    statement each: round trips to PostgreSQL were most of a consumer's cost under load,
    and then the rows' statements were a tenth of PostgreSQL's work (decision 0141). Whoever opens
    the transaction flushes before committing (:func:`unit_of_work`, the consumers)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.emitted: list[Event] = []
        self._deferred: dict[RowsInsert, list[tuple[Any, ...]]] = {}

    async def emit(self, event: Event, *, aggregate_type: str | None = None) -> None:
        if aggregate_type is None:
            provider = event.event_type in ("ProviderUpdated", "ProviderQualityRecorded")
            aggregate_type = "provider" if provider else "package"
        self.defer(
            OUTBOX_ROWS,
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

    def defer(self, insert: RowsInsert, row: tuple[Any, ...]) -> None:
        """Write ``row`` (a value per column of ``insert``) at the end of the transaction, in order
        with the other rows of its table."""
        self._deferred.setdefault(insert, []).append(row)

    async def flush(self) -> None:
        """Write the deferred rows: one statement, one round trip, for every table (decision 0141)."""
        deferred, self._deferred = self._deferred, {}
        await insert_rows(self.conn, list(deferred.items()))


@asynccontextmanager
async def unit_of_work(pool: asyncpg.Pool) -> AsyncIterator[UnitOfWork]:
    async with pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn)
        yield uow
        await uow.flush()


# PostgreSQL aborted the transaction because of another one (SQLSTATE 40P01, 40001): running it
# again from the start is the remedy PostgreSQL's manual gives (13.2.3, 13.3.1).
CONFLICTS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


async def run_in_unit_of_work(
    pool: asyncpg.Pool, command: Callable[[UnitOfWork], Awaitable[T]], *, attempts: int = 4
) -> T:
    """``await command(uow)`` in a unit of work, run again from the start (a new transaction, a
    short random pause) when PostgreSQL aborts it for a conflict with another transaction - a
    deadlock or a serialization failure - up to ``attempts`` times; then the conflict is raised
    (the HTTP edge answers 503 with Retry-After). For an API's commands: a caller never sees a
    conflict that a second try settles. ``command`` must be safe to run again (it is: all its
    writes were rolled back). Other exceptions pass straight through."""
    for attempt in range(1, attempts + 1):
        try:
            async with unit_of_work(pool) as uow:
                return await command(uow)
        except CONFLICTS as exc:
            if attempt == attempts:
                raise
            log.warning("transaction conflicted with another; running it again", attempt=attempt, error=repr(exc))
            await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")


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


@dataclass
class _Sent:
    """What became of a relay batch's rows."""

    published: list = field(default_factory=list)  # row ids
    parked: list[tuple] = field(default_factory=list)  # (row id, error)
    transient: BaseException | None = None  # the last error worth a retry, if any


class Relay:
    """Publishes committed outbox rows in order per aggregate; any number may run at once.

    A row Kafka refuses for good (``kafka_errors.is_permanent``: too large, topic unknown or not
    writable, record invalid...) is **parked**: marked, counted (``homecare_outbox_parked_total``),
    logged and listed for operators (``homecare outbox parked``, ``/health/ready``), and the rows
    behind it are published. The later rows of the *same* aggregate wait behind the parked one
    (``homecare_outbox_held_rows``), so a package's events never reach Kafka out of order or with
    a gap; an operator retries the parked row once the cause is fixed, or discards it, which
    releases them (docs/decisions/0031). Kafka away is waited out with a backoff, as before."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        *,
        service: str,
        batch_size: int = 200,
        poll_seconds: float = 0.05,
        retention_seconds: int = 3600,
        known_topics: Collection[str] | None = None,
        topic_exists: Callable[[str], Awaitable[bool]] | None = None,
        heartbeat_seconds: float = 2.0,
        relay_ttl_seconds: float = 10.0,
        listen: Callable[[], Awaitable[asyncpg.Connection]] | None = None,
        idle_poll_seconds: float = 1.0,
        gather_seconds: float = 0.025,
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.service = service
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.retention_seconds = retention_seconds
        # Rows for any other topic are parked without asking Kafka (which would wait out its
        # request timeout for a topic it does not know before saying so).
        self.known_topics = set(known_topics if known_topics is not None else all_topics())
        self.topic_exists = topic_exists
        self.published = 0
        self.parked = 0
        # Sharing the buckets with the other instances' relays (decision 0081).
        self.relay_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.heartbeat_seconds = heartbeat_seconds
        self.relay_ttl_seconds = relay_ttl_seconds
        self.buckets = BUCKETS  # this process's count (configure_buckets)
        self.share = self.buckets  # how many buckets this relay claims; the first heartbeat sets it
        self.first_bucket = 0  # where its claim starts, so live relays prefer disjoint buckets
        self._beat_at = -math.inf
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Woken by PostgreSQL when a transaction that wrote outbox rows commits (decision 0137):
        # ``listen`` opens a connection of its own for LISTEN. While it listens, an idle relay
        # looks again only every ``idle_poll_seconds`` (heartbeats, another relay's buckets taken
        # over); while it cannot, every ``poll_seconds``, as before. Nothing depends on a
        # notification arriving: a missed one costs at most ``idle_poll_seconds``.
        self.listen = listen
        # What the last batch found: a full read (more rows wait) and whether another relay held
        # one of this relay's own buckets (decision 0139).
        self._read_full = False
        self._contended = False
        self.idle_poll_seconds = idle_poll_seconds
        # Woken by a commit while commits are coming often (the last woke it less than
        # GATHER_WHILE_WITHIN of these ago), wait this long before reading, so that the commits
        # close behind it go in the same batch: fewer relay transactions and Kafka requests, and
        # fuller batches for the consumers downstream, for at most this much latency a hop
        # (decision 0147). A quiet system's commit is published at once; so is anything after a
        # full read.
        self.gather_seconds = gather_seconds
        self._woken_at = -math.inf
        self.listening = False
        self._written = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None

    def start(self) -> None:
        # Its settings, so that an A/B through the environment can be seen to reach the process.
        log.info(
            "outbox relay started",
            batch_size=self.batch_size,
            idle_poll_seconds=self.idle_poll_seconds,
            gather_seconds=self.gather_seconds,
            listen=self.listen is not None,
        )
        self._task = asyncio.create_task(self.run(), name=f"{self.service}-outbox-relay")
        if self.listen is not None:
            self._listener = asyncio.create_task(self._listen(), name=f"{self.service}-outbox-listen")

    def _on_written(self, *_: object) -> None:
        self._written.set()

    async def _listen(self) -> None:
        """Keep a LISTEN on this schema's outbox channel, reconnecting with a backoff when the
        connection is lost; the relay polls every ``poll_seconds`` meanwhile."""
        assert self.listen is not None
        delays = backoff_delays(0.5, 10.0)
        while not self._stopping.is_set():
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await self.listen()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                schema = await conn.fetchval("SELECT current_schema()")
                await conn.add_listener(f"outbox:{schema}", self._on_written)
                self.listening = True
                self._written.set()  # rows committed while nobody listened: look at once
                delays = backoff_delays(0.5, 10.0)
                await lost.wait()
                log.warning("outbox relay lost its LISTEN connection; polling until it is back")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay cannot LISTEN for new rows; polling", error=repr(exc))
                await self._sleep(next(delays))
            finally:
                self.listening = False
                if conn is not None:
                    with suppress(Exception):
                        await conn.close(timeout=2)

    async def check_buckets(self) -> None:
        """Refuse to relay with a bucket count other than the one the waiting rows were written
        with: rows in a bucket past this count would never be claimed, and one aggregate's rows in
        two buckets could be published by two relays out of order. Raises BucketCountMismatch,
        saying what to do."""
        stranded = await self.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND bucket >= $1", self.buckets
        )
        if stranded:
            raise BucketCountMismatch(
                f"{stranded} unpublished outbox row(s) of {self.service} are in buckets beyond OUTBOX_BUCKETS="
                f"{self.buckets}: start the service with the count they were written with, let the outbox "
                "drain, stop every instance, then change it (docs/guide/kubernetes.md)"
            )

    async def stop(self) -> None:
        """Finish the batch in hand, then return; the other relays take this one's share at
        their next heartbeat."""
        self._stopping.set()
        self._written.set()  # an idle relay waits on it
        if self._listener:
            self._listener.cancel()
            with suppress(asyncio.CancelledError):
                await self._listener
        if self._task:
            await self._task
        with suppress(Exception):  # the database away: the row expires instead
            await self.pool.execute("DELETE FROM outbox_relays WHERE relay_id = $1", self.relay_id)

    async def heartbeat(self) -> None:
        """Say this relay is alive and take its fair share of the buckets: ``ceil(BUCKETS / live
        relays)``, starting at its rank among them. A relay not seen for ``relay_ttl_seconds``
        counts no more, so the others take over its buckets within that time (or at once when it
        stopped cleanly). Rows of relays gone for long are deleted."""
        rows = await self.pool.fetch(
            """WITH beat AS (INSERT INTO outbox_relays (relay_id, buckets) VALUES ($1, $3)
                             ON CONFLICT (relay_id) DO UPDATE SET seen_at = now(), buckets = $3),
                    gone AS (DELETE FROM outbox_relays WHERE seen_at < now() - make_interval(secs => $2::float8 * 10))
               SELECT relay_id, buckets FROM outbox_relays
                WHERE seen_at >= now() - make_interval(secs => $2::float8) AND relay_id <> $1
               UNION SELECT $1, $3 ORDER BY 1""",
            self.relay_id,
            self.relay_ttl_seconds,
            self.buckets,
        )
        live = [r["relay_id"] for r in rows]
        others = sorted({r["buckets"] for r in rows if r["buckets"] is not None and r["buckets"] != self.buckets})
        if others:
            # Two counts at once would put one aggregate's rows in two buckets (out of order):
            # this relay publishes nothing until every live relay uses the same count.
            self.share = 0
            metrics.OUTBOX_RELAY_SHARE.labels(self.service).set(0)
            log.error(
                "outbox relays disagree on OUTBOX_BUCKETS; this relay publishes nothing until they agree",
                buckets=self.buckets,
                others=others,
            )
            self._beat_at = asyncio.get_running_loop().time()
            return
        self.share = math.ceil(self.buckets / len(live))
        self.first_bucket = (live.index(self.relay_id) * self.share) % self.buckets
        metrics.OUTBOX_RELAY_SHARE.labels(self.service).set(self.share)
        self._beat_at = asyncio.get_running_loop().time()

    async def run(self) -> None:
        delays = backoff_delays(0.2, 10.0)
        last_cleanup = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                if loop.time() - self._beat_at >= self.heartbeat_seconds:
                    await self.heartbeat()
                # Cleared before reading: a commit during the batch wakes the next wait at once.
                self._written.clear()
                await self.publish_batch()
                delays = backoff_delays(0.2, 10.0)  # healthy again: reset the backoff
                if loop.time() - last_cleanup > 60:
                    await self.clean_up()
                    last_cleanup = loop.time()
                # A full read leaves more behind: read again at once. Otherwise wait to be told of
                # a commit (decision 0139). One made during the batch has set the flag already, so
                # no row waits, and no batch is spent finding nothing after each one that found
                # something. But a commit in a bucket another relay held just then may have woken
                # this relay only, for buckets it no longer claims: after a contended claim, look
                # again soon rather than at the idle poll.
                if not self._read_full and not self._stopping.is_set():
                    quiet = self.listening and not self._contended
                    with suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._written.wait(), self.idle_poll_seconds if quiet else self.poll_seconds
                        )
                    if self._written.is_set() and self.gather_seconds > 0:
                        previous, self._woken_at = self._woken_at, loop.time()
                        if self._woken_at - previous < GATHER_WHILE_WITHIN * self.gather_seconds:
                            await self._sleep(self.gather_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or Kafka is away: rows stay, try again later
                delay = next(delays)
                log.warning("outbox relay failed; will retry", error=repr(exc), retry_in=round(delay, 2))
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    def own_buckets(self) -> set[int]:
        """The buckets this relay claims first: its share, from its first bucket on."""
        return {(self.first_bucket + i) % self.buckets for i in range(self.share)}

    async def claim_buckets(self, conn: Connection) -> list[int]:
        """Lock this relay's buckets for the transaction ``conn`` is in (an advisory lock each):
        at most its share, tried from its own first bucket on, so live relays split the buckets
        rather than the first claiming them all (:data:`RELAY_CLAIM_BUCKETS`). The same statement
        turns bitmap and sequential scans off for the rest of the transaction, on every table
        (decision 0138: the relay's next statements read and mark the outbox)."""
        return list(await conn.fetchval(RELAY_CLAIM_BUCKETS, self.buckets, self.first_bucket, self.share))

    async def publish_batch(self) -> int:
        """Publish the next rows of the buckets this relay can claim; the number of rows settled
        (published or parked). Raises the last transient error, after marking what did succeed."""
        async with self.pool.acquire() as conn, conn.transaction():
            # First claim buckets (an advisory lock each, held until this transaction ends),
            # then read their rows in a second statement. The split matters: the second
            # statement's snapshot is taken after the buckets' previous holder committed, so
            # it sees every row that relay left behind, and one aggregate's events - which
            # share a bucket - are only ever published by one relay at a time, in seq order.
            self._read_full = False
            buckets = await self.claim_buckets(conn)
            self._contended = set(buckets) != self.own_buckets()
            if not buckets:
                return 0
            rows = await conn.fetch(RELAY_NEXT_ROWS, self.batch_size, buckets)
            # Counted as read, not as settled: rows held behind one parked in this batch are left.
            self._read_full = len(rows) >= self.batch_size
            if not rows:
                return 0
            sent = await self._send(rows)
            if sent.published:
                await conn.execute(RELAY_MARK_PUBLISHED, sent.published)
            if sent.parked:
                await conn.executemany(
                    "UPDATE outbox SET parked_at = now(), park_error = $2 WHERE id = $1", sent.parked
                )
        self.published += len(sent.published)
        self.parked += len(sent.parked)
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(sent.published))
        if sent.transient is not None:
            raise sent.transient
        return len(sent.published) + len(sent.parked)

    async def _send(self, rows: list) -> _Sent:
        """Publish the rows in waves: the first row of every aggregate, then (once Kafka has
        acknowledged those) the second, and so on; one round trip per wave. An aggregate whose
        row failed sends nothing more in this batch, so a refused row is never overtaken by a
        later one of its package."""
        waves: list[list] = []
        depth: dict[tuple[str, str], int] = {}
        for row in rows:
            aggregate = (row["aggregatetype"], row["aggregateid"])
            n = depth.get(aggregate, 0)
            depth[aggregate] = n + 1
            if n == len(waves):
                waves.append([])
            waves[n].append(row)
        sent = _Sent()
        stopped: set[tuple[str, str]] = set()

        async def failed(row: asyncpg.Record, exc: BaseException) -> None:
            stopped.add((row["aggregatetype"], row["aggregateid"]))
            if await refused_for_good(exc, row["topic"], self.topic_exists):
                self._park(row, describe(exc), exc)
                sent.parked.append((row["id"], describe(exc)[:2000]))
            else:
                sent.transient = exc

        for wave in waves:
            pending = []
            for row in wave:
                if (row["aggregatetype"], row["aggregateid"]) in stopped:
                    continue
                if row["topic"] not in self.known_topics:
                    await failed(
                        row, errors.UnknownTopicOrPartitionError(f"{row['topic']} is not a topic of this system")
                    )
                    continue
                try:  # a record too large is refused here, before it is sent
                    pending.append((row, await self._publish(row, confirm=False)))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await failed(row, exc)
            results = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
            for (row, _), result in zip(pending, results, strict=True):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                if not isinstance(result, BaseException):
                    sent.published.append(row["id"])
                    continue
                if is_permanent(result):
                    # Kafka refuses a whole request batch at once: sent alone, an innocent row
                    # that shared it with the guilty one gets through, and only the guilty is parked.
                    try:
                        await self._publish(row, confirm=True)
                        sent.published.append(row["id"])
                        continue
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        result = exc
                await failed(row, result)
        return sent

    async def _publish(self, row: asyncpg.Record, *, confirm: bool) -> asyncio.Future[RecordMetadata] | RecordMetadata:
        headers = json.loads(row["headers"])
        return await self.broker.publish(
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
            no_confirm=not confirm,
        )

    def _park(self, row: asyncpg.Record, error: str, exc: BaseException) -> None:
        metrics.OUTBOX_PARKED_TOTAL.labels(self.service, type(exc).__name__).inc()
        log.error(
            "outbox row refused by Kafka for good; parked (later rows of its aggregate wait behind it)",
            event_id=str(row["id"]),
            event_type=row["type"],
            aggregate=f"{row['aggregatetype']}:{row['aggregateid']}",
            topic=row["topic"],
            payload_bytes=len(row["payload"].encode()),
            error=error,
        )

    async def clean_up(self) -> None:
        """Published rows are kept a while for inspection, then removed: the table stays small.
        The inbox's and the idempotency keys' old rows go too (the service's housekeeping)."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                """DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)
                                         OR discarded_at < now() - make_interval(secs => $1)""",
                float(self.retention_seconds),
            )
            await conn.execute("DELETE FROM inbox WHERE processed_at < now() - interval '14 days'")
            await idempotency.forget_expired(conn)

    @staticmethod
    async def backlog(pool: asyncpg.Pool) -> int:
        """Rows not yet published (parked ones and those held behind them included)."""
        return int(
            await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL AND discarded_at IS NULL")
        )

    @staticmethod
    async def parked_rows(pool: asyncpg.Pool) -> tuple[int, int]:
        """(rows parked now, rows held behind them: later rows of the same aggregates)."""
        row = await fetch_one(pool, PARKED_COUNTS)
        return row["parked"], row["held"]


# Parked rows, and the rows waiting behind one of their aggregate's parked rows.
PARKED_COUNTS = """
    WITH parked AS (SELECT aggregatetype, aggregateid, min(seq) AS seq, count(*) AS n FROM outbox
                     WHERE parked_at IS NOT NULL AND published_at IS NULL AND discarded_at IS NULL
                     GROUP BY aggregatetype, aggregateid)
    SELECT coalesce((SELECT sum(n) FROM parked), 0)::int AS parked,
           (SELECT count(*) FROM outbox o JOIN parked p USING (aggregatetype, aggregateid)
             WHERE o.published_at IS NULL AND o.parked_at IS NULL AND o.discarded_at IS NULL
               AND o.seq > p.seq)::int AS held"""
