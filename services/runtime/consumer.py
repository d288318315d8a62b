"""Kafka consumers with the delivery contract built in.

Every service consumes through :class:`EventConsumer`. For each message it:

1. reads the record into an event (:func:`read_event`); a record that is not one - headers
   that are not UTF-8 text, a value that is not a valid event (bad or truncated JSON, wrong
   field types, unknown event type, unsupported schema version), a key that is not the
   event's - goes to the dead-letter topic on its own, with its raw bytes, its origin and the
   error, and the partition moves on (docs/guide/dead-letters.md). Nothing in a record's bytes
   can fail its batch: aiokafka and FastStream are made to hand over any record
   (``kafka_records``), and a dead letter too large for Kafka is cut to fit, not retried
   forever (``dead_letters``, ``kafka_errors``);
2. opens one transaction, records ``(consumer, event id)`` in the inbox - a redelivered event
   stops here - and runs the handler, whose state changes and emitted events (outbox) commit
   in that same transaction;
3. commits the Kafka offset only after the database commit.

Transient failures (PostgreSQL away or restarting, serialization conflicts) are retried with
jittered exponential backoff, capped at ``consumer_backoff_max_seconds``, for up to
``consumer_transient_give_up_seconds`` (long enough to ride out a restart: dead-lettering
sooner would break the order of a package's events and turn a blip into a manual replay),
then dead-lettered. A handler error that is not transient (a bug, data it cannot apply) gets
``consumer_max_attempts`` attempts and then goes to dead letters, from where ``homecare
dead-letters replay`` puts it back once the cause is fixed.

Messages arrive in batches (whatever the partitions hold, up to ``consumer_batch_size``), and
a batch whose events all apply cleanly is applied in **one** transaction with one inbox insert
and one offset commit: per event, a transaction's BEGIN/COMMIT, its flush to disk and a Kafka
commit round trip were most of the cost (the benchmark's profile). If anything in the batch
fails, the transaction rolls back and the batch is applied again one event at a time by the
path described above, so retries and dead letters concern only the faulty event; the
unreadable records of a batch are set aside before it is applied and dead-lettered after. A message
whose ``event_type`` header names an event this service does not handle is skipped unparsed.

An event is accepted only from the topic that owns its type (``schemas.topics.TOPIC_OF``) and
only when its ``producer`` is that topic's owner (``schemas.topics.OWNER``): anything else - a
forged or misrouted event, even one this service does not handle - is dead-lettered (reason
``misrouted``) and never applied.

FastStream runs with ``AckPolicy.MANUAL``: its other policies either commit before the work
(ACK_FIRST), commit failed work (ACK, REJECT_ON_ERROR) or re-read a failing message in a
tight loop (NACK_ON_ERROR). Batches of one subscriber are processed one at a time, which
is what makes ``msg.ack()`` (a commit of the consumer's position) safe.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast, overload

import asyncpg
import structlog
from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.message import StreamMessage
from pydantic import ValidationError

from schemas import topics as contract
from schemas.events import EVENT_TYPES, Envelope, Event, parse_event
from services.runtime import metrics
from services.runtime.db import backoff_delays, is_transient
from services.runtime.dead_letters import MAX_BYTES, SMALLER_BUDGETS, DeadLetter, RawHeaders, publish_dead_letter
from services.runtime.kafka import FASTSTREAM_BATCH_TIMEOUT_MS, poll_without_sleeping
from services.runtime.kafka_errors import describe, is_too_large, refused_for_good
from services.runtime.kafka_records import header_name_bytes, install, tolerant_batch_parser
from services.runtime.logging import get_logger
from services.runtime.outbox import UnitOfWork, record_in_inbox
from services.runtime.problems import validation_message
from services.runtime.topics import dead_letters as topics_dead_letters
from services.runtime.topics import resolve

install()  # aiokafka reads every record batch, whatever bytes its header names hold

log = get_logger(__name__)

E1 = TypeVar("E1", bound=Envelope)
E2 = TypeVar("E2", bound=Envelope)
E3 = TypeVar("E3", bound=Envelope)
E4 = TypeVar("E4", bound=Envelope)
# A handler of events of type E; the consumer calls it only with the event types it was registered for.
HandlerOf = Callable[[UnitOfWork, E1], Awaitable[None]]
Handler = HandlerOf[Event]
# A handler of several events at once (``consumer.on_batch``): the fresh events of a batch, in order.
BatchHandler = Callable[[UnitOfWork, list[Event]], Awaitable[None]]


class Rejected(Exception):
    """A handler's verdict that an event can never be applied: dead-letter it at once."""


def misrouted(topic: str, event: Envelope) -> str | None:
    """Why ``event`` may not be accepted from ``topic`` (None when it may): every event type has
    one home topic, written by one producer (docs/decisions/0047). The broker's ACLs keep each
    service's principal to its own topics; this is the consumer's half of the same rule."""
    home = contract.topic_for(event)
    name = type(event).__name__  # the class is named after its event_type
    if topic != resolve(home):
        return f"{name} is accepted only from {resolve(home)}, not from {topic}"
    owner = contract.OWNER[home]
    if event.producer != owner:
        return f"{name} on {topic} names producer {event.producer!r}; only {owner} writes {home}"
    return None


def _at_home(declared: str, topic: str) -> bool:
    """True when an event of the type named in a header belongs on ``topic``."""
    return resolve(contract.TOPIC_OF[EVENT_TYPES[declared]]) == topic


@dataclass(frozen=True)
class Delivery:
    """Where a message came from and what it held, exactly as read: everything the logs and the
    dead letters need. ``headers`` are the headers as text; a record whose headers are not all
    text (a name or value that is not UTF-8, a header without a value) has them in ``problem``,
    and is dead-lettered rather than applied."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    raw_headers: RawHeaders = ()
    value_is_null: bool = False
    problem: str | None = None

    def __post_init__(self) -> None:
        if not self.raw_headers and self.headers:  # built by hand (tests): the text is the bytes
            object.__setattr__(self, "raw_headers", tuple((k.encode(), v.encode()) for k, v in self.headers.items()))

    @property
    def raw_value(self) -> bytes | None:
        return None if self.value_is_null else self.value

    @classmethod
    def of(cls, record: ConsumerRecord[bytes | None, bytes | None]) -> Delivery:
        """From an aiokafka ConsumerRecord; never raises, whatever bytes the record holds."""
        raw: list[tuple[bytes, bytes | None]] = []
        headers: dict[str, str] = {}
        problems: list[str] = []
        for name, value in record.headers or ():
            name_bytes = header_name_bytes(name) if isinstance(name, str) else bytes(name)
            raw.append((name_bytes, value))
            try:
                text_name = name_bytes.decode()
            except UnicodeDecodeError:
                problems.append(f"header name {name_bytes[:60]!r} is not UTF-8")
                continue
            if value is None:
                problems.append(f"header {text_name[:60]!r} has no value")
                continue
            try:
                headers[text_name] = value.decode()
            except UnicodeDecodeError:
                problems.append(f"header {text_name[:60]!r}: value {value[:60]!r} is not UTF-8")
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value or b"",
            headers,
            tuple(raw),
            record.value is None,
            "; ".join(problems) or None,
        )


async def raw_body(message: StreamMessage[Any]) -> bytes:
    """FastStream decoder that leaves the bytes alone: parsing is ours, so failures are too."""
    return message.body


class RebalancePauses(ConsumerRebalanceListener):
    """Times the pauses a rebalance of its group causes this consumer: aiokafka rebalances eagerly
    (every member gives up all its partitions, rejoins, and is assigned again; it has no
    incremental cooperative protocol), so from the moment its partitions are revoked until its
    next assignment the consumer fetches nothing. Each pause goes to the
    ``homecare_consumer_rebalance_pause_seconds`` histogram and a log line. A member's first
    assignment (it had nothing to give up) and its last revocation (it is stopping) are no pause
    of a running consumer and are not counted. Decision 0135; ``homecare bench-rebalance``
    reads them."""

    def __init__(self, service: str, group: str) -> None:
        self.service = service
        self.group = group
        self.revoked_at: float | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self.revoked_at = time.monotonic()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.revoked_at is None:
            return
        pause = time.monotonic() - self.revoked_at
        self.revoked_at = None
        metrics.REBALANCE_PAUSES.labels(self.service, self.group).observe(pause)
        log.info("consumer group rebalanced", group=self.group, pause_seconds=round(pause, 3), partitions=len(assigned))


class EventConsumer:
    def __init__(
        self,
        *,
        service: str,
        group: str,
        pool_provider: Callable[[], asyncpg.Pool],
        broker: KafkaBroker,
        max_attempts: int = 3,
        backoff_initial: float = 0.2,
        backoff_max: float = 15.0,
        transient_give_up_seconds: float = 240.0,
        batch_size: int = 100,
        poll_wait_ms: int = 1000,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        group_instance_id: str | None = None,
        dead_letter_max_bytes: int = MAX_BYTES,
        topic_exists: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.service = service
        self.group = group
        self._pool_provider = pool_provider
        self.broker = broker
        self.max_attempts = max_attempts
        self.transient_give_up_seconds = transient_give_up_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.batch_size = batch_size
        self.poll_wait_ms = poll_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.group_instance_id = group_instance_id
        self.handlers: dict[str, Handler] = {}
        # Handlers that take a batch's events together (set-based projections); each also has a
        # one-event form in self.handlers, for the one-at-a-time path.
        self.batch_handlers: dict[str, BatchHandler] = {}
        self.stopping = asyncio.Event()
        self.dead_letter_max_bytes = dead_letter_max_bytes
        # Whether a topic exists, asked of an admin client: tells "unknown topic" from Kafka away.
        self.topic_exists = topic_exists

    # One overload per number of event classes, so that mypy checks the handler takes exactly
    # their union (a TypeVar over *args would widen it to Envelope).
    @overload
    def on(self, t1: type[E1], /) -> Callable[[HandlerOf[E1]], HandlerOf[E1]]: ...
    @overload
    def on(self, t1: type[E1], t2: type[E2], /) -> Callable[[HandlerOf[E1 | E2]], HandlerOf[E1 | E2]]: ...
    @overload
    def on(
        self, t1: type[E1], t2: type[E2], t3: type[E3], /
    ) -> Callable[[HandlerOf[E1 | E2 | E3]], HandlerOf[E1 | E2 | E3]]: ...
    @overload
    def on(
        self, t1: type[E1], t2: type[E2], t3: type[E3], t4: type[E4], /
    ) -> Callable[[HandlerOf[E1 | E2 | E3 | E4]], HandlerOf[E1 | E2 | E3 | E4]]: ...
    @overload  # more classes: the handler is not checked against them (add an overload above if needed)
    def on(self, *event_types: type[Envelope]) -> Callable[[HandlerOf[Any]], HandlerOf[Any]]: ...
    def on(self, *event_types: type[Envelope]) -> Callable[[Any], Any]:
        """Register a handler for these event classes: ``consumer.on(PackagePlaced)(handler)``,
        where ``handler(uow, event)`` takes an event of one of these classes."""

        def register(fn: HandlerOf[Any]) -> HandlerOf[Any]:
            for model in event_types:
                # Dispatch is by event_type, so the handler only ever gets the classes it declared.
                self.handlers[model.model_fields["event_type"].default] = cast(Handler, fn)
            return fn

        return register

    def on_batch(self, *event_types: type[Envelope]) -> Callable[[BatchHandler], BatchHandler]:
        """Register a handler that applies many events at once: ``handler(uow, events)`` gets
        every fresh event of a batch with these types, in the batch's order, in one call (a
        projection writes them with one statement per table instead of one per event). It must
        give the same state as applying them one by one; the one-at-a-time path (a failed
        batch's retries and dead letters) calls it with a single event."""

        def register(fn: BatchHandler) -> BatchHandler:
            async def one(uow: UnitOfWork, event: Event) -> None:
                await fn(uow, [event])

            for model in event_types:
                event_type = model.model_fields["event_type"].default
                self.batch_handlers[event_type] = fn
                self.handlers[event_type] = one
            return fn

        return register

    def subscribe(self, *topics: str) -> None:
        """Attach this consumer to the broker: one subscriber (consumer group) on these topics."""

        names = [resolve(t) for t in topics]
        # Said once at start, so that a setting tried in an A/B (the benchmark's --env) can be
        # seen to have reached the process.
        log.info(
            "consumer subscribed",
            group=self.group,
            topics=",".join(names),
            batch_size=self.batch_size,
            poll_wait_ms=self.poll_wait_ms,
            fetch_min_bytes=self.fetch_min_bytes,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )

        subscriber = self.broker.subscriber(
            *names,
            group_id=self.group,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            decoder=raw_body,
            # FastStream's own batch parser decodes every header as UTF-8 and drops the whole batch
            # when one does not decode; this one leaves judging the records to process_batch.
            parser=tolerant_batch_parser,
            batch=True,
            max_records=self.batch_size,
            batch_timeout_ms=FASTSTREAM_BATCH_TIMEOUT_MS,  # its poll's; ours replaces it below
            fetch_min_bytes=self.fetch_min_bytes,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            group_instance_id=self.group_instance_id,
            listener=RebalancePauses(self.service, self.group),
            title=f"{self.group}:{','.join(names)}",
            description=f"{self.service} consumes {', '.join(names)}",
        )
        poll_without_sleeping(subscriber, self.poll_wait_ms)

        @subscriber
        async def on_messages(bodies: list[bytes]) -> None:
            # The message comes from the broker's context, not as a `msg: KafkaMessage` parameter:
            # fast_depends resolves such a context parameter with a synchronous function, which it
            # runs in a worker thread - a thread hop per message (the benchmark's profile).
            msg: KafkaMessage = self.broker.context.get_local("message")
            raw = msg.raw_message
            records = raw if isinstance(raw, (list, tuple)) else (raw,)
            applied = False
            try:
                applied = await self.process_batch([Delivery.of(r) for r in records])
            finally:
                # ack() commits the consumer's whole position, so a batch left neither applied nor
                # dead-lettered must be rewound (nack seeks each partition back to its earliest
                # record); otherwise the next ack would commit past it.
                if applied:
                    await msg.ack()
                else:
                    await msg.nack()

    async def process_batch(self, deliveries: list[Delivery]) -> bool:
        """Apply a batch, in one transaction when it can be. True when its offsets may be committed.

        A record that cannot be read as one of our events (headers that are not text, a value
        that is not a valid event, a key that is not the event's) is set aside and dead-lettered
        on its own, once, after the rest of the batch is applied."""
        work: list[tuple[Delivery, Event, Handler]] = []
        unreadable: list[tuple[Delivery, str]] = []
        misplaced: list[tuple[Delivery, str, str]] = []
        for delivery in deliveries:
            if delivery.problem is None:
                declared = delivery.headers.get("event_type")
                if (
                    declared is not None
                    and declared not in self.handlers
                    and declared in EVENT_TYPES
                    and _at_home(declared, delivery.topic)
                ):
                    # Not an event this service handles (its producer says which it is): not parsed.
                    metrics.EVENTS_HANDLED.labels(self.service, self.group, declared, "ignored").inc()
                    continue
            event, error = read_event(delivery)
            if event is None:
                unreadable.append((delivery, error or "unreadable"))
                continue
            wrong_place = misrouted(delivery.topic, event)
            if wrong_place:  # never applied, even when no handler here wants its type
                misplaced.append((delivery, wrong_place, type(event).__name__))
                continue
            handler = self.handlers.get(event.event_type)
            if handler is None:
                metrics.EVENTS_HANDLED.labels(self.service, self.group, event.event_type, "ignored").inc()
                continue
            work.append((delivery, event, handler))
        if not await self._apply_batch(work):
            return False  # shutting down: the batch comes back whole
        for delivery, error in unreadable:
            if not await self._dead_letter(delivery, "invalid", error, attempts=1, event_type=None):
                return False
        for delivery, error, event_type in misplaced:
            if not await self._dead_letter(delivery, "misrouted", error, attempts=1, event_type=event_type):
                return False
        return True

    async def _apply_batch(self, work: list[tuple[Delivery, Event, Handler]]) -> bool:
        if not work:
            return True
        if len(work) == 1:  # the usual batch when traffic is light: the single path, no batch bookkeeping
            return await self.process(work[0][0], work[0][1])
        started = time.perf_counter()
        try:
            async with self._pool_provider().acquire() as conn, conn.transaction():
                fresh = await record_in_inbox(conn, consumer=self.group, deliveries=[(e, d) for d, e, _ in work])
                applied = []
                uow = UnitOfWork(conn)  # one for the batch: its outbox rows are written at once
                # A run of consecutive events for one batch handler goes to it in one call.
                together: list[Event] = []
                together_by: BatchHandler | None = None
                for _delivery, event, handler in work:
                    first_time = event.event_id in fresh
                    fresh.discard(event.event_id)  # the same event twice in one batch: applied once
                    if first_time:
                        many = self.batch_handlers.get(event.event_type)
                        if together and many is not together_by:
                            await cast(BatchHandler, together_by)(uow, together)
                            together = []
                        if many is None:
                            await handler(uow, event)
                        else:
                            together.append(event)
                            together_by = many
                    applied.append(first_time)
                if together:
                    await cast(BatchHandler, together_by)(uow, together)
                await uow.flush()
        except Exception as exc:
            log.info("batch not applied as one; applying its events one at a time", size=len(work), error=repr(exc))
            for delivery, event, _handler in work:
                if not await self.process(delivery, event):
                    return False  # shutting down: the rest come back with the rewound batch
            return True
        seconds = (time.perf_counter() - started) / len(work)
        for (delivery, event, _), first_time in zip(work, applied, strict=True):
            metrics.EVENTS_HANDLED.labels(
                self.service, self.group, event.event_type, "applied" if first_time else "duplicate"
            ).inc()
            metrics.HANDLER_SECONDS.labels(self.service, event.event_type).observe(seconds)
            log.info(
                "event applied" if first_time else "duplicate event skipped",
                event_id=str(event.event_id),
                event_type=event.event_type,
                correlation_id=str(event.correlation_id),
                topic=delivery.topic,
                partition=delivery.partition,
                offset=delivery.offset,
                consumer_group=self.group,
                batch=len(work),
            )
        return True

    async def process(self, delivery: Delivery, event: Event | None = None) -> bool:
        """Apply one message (``event``: already parsed from it). True when its offset may be
        committed; False only on shutdown."""
        structlog.contextvars.bind_contextvars(
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            consumer_group=self.group,
            event_id=None,
            event_type=None,
            correlation_id=None,
            attempt=None,
        )
        try:
            if event is None:
                event, error = read_event(delivery)
                if event is None:
                    return await self._dead_letter(
                        delivery, "invalid", error or "unreadable", attempts=1, event_type=None
                    )
            structlog.contextvars.bind_contextvars(
                event_id=str(event.event_id), event_type=event.event_type, correlation_id=str(event.correlation_id)
            )
            wrong_place = misrouted(delivery.topic, event)
            if wrong_place:
                return await self._dead_letter(
                    delivery, "misrouted", wrong_place, attempts=1, event_type=type(event).__name__
                )
            handler = self.handlers.get(event.event_type)
            if handler is None:
                metrics.EVENTS_HANDLED.labels(self.service, self.group, event.event_type, "ignored").inc()
                return True
            return await self._apply(handler, event, delivery)
        finally:
            structlog.contextvars.unbind_contextvars(
                "topic", "partition", "offset", "consumer_group", "event_id", "event_type", "correlation_id", "attempt"
            )

    async def _apply(self, handler: Handler, event: Event, delivery: Delivery) -> bool:
        delays = backoff_delays(self.backoff_initial, self.backoff_max)
        attempt = 0
        first_try = time.monotonic()
        while True:
            attempt += 1
            structlog.contextvars.bind_contextvars(attempt=attempt)
            started = time.perf_counter()
            try:
                async with self._pool_provider().acquire() as conn, conn.transaction():
                    first_time = bool(await record_in_inbox(conn, consumer=self.group, deliveries=[(event, delivery)]))
                    if first_time:
                        uow = UnitOfWork(conn)
                        await handler(uow, event)
                        await uow.flush()
                outcome = "applied" if first_time else "duplicate"
                metrics.EVENTS_HANDLED.labels(self.service, self.group, event.event_type, outcome).inc()
                metrics.HANDLER_SECONDS.labels(self.service, event.event_type).observe(time.perf_counter() - started)
                log.info("event applied" if first_time else "duplicate event skipped")
                return True
            except Rejected as exc:
                return await self._dead_letter(
                    delivery, "rejected", str(exc), attempts=attempt, event_type=event.event_type
                )
            except Exception as exc:
                error = exc
                if is_transient(exc):
                    # PostgreSQL away or restarting: wait it out (the backoff is capped) for up to
                    # transient_give_up_seconds - long enough for a restart or a fail-over, since
                    # dead-lettering would reorder a package's events and need a manual replay.
                    reason = "transient-exhausted"
                    give_up = time.monotonic() - first_try >= self.transient_give_up_seconds
                else:  # a fault in the handler or its data: a few attempts, then dead letters
                    reason = "handler-error"
                    give_up = attempt >= self.max_attempts
            if give_up:
                log.error("giving up on event", error=repr(error), exc_info=error)
                return await self._dead_letter(
                    delivery, reason, repr(error), attempts=attempt, event_type=event.event_type
                )
            delay = next(delays)
            metrics.HANDLER_RETRIES.labels(self.service, event.event_type).inc()
            log.warning("event failed; retrying", error=repr(error), retry_in=round(delay, 2))
            if await self._stopping_within(delay):
                return False  # shutting down: leave the offset uncommitted, the event comes back

    async def _dead_letter(
        self, delivery: Delivery, reason: str, error: str, *, attempts: int, event_type: str | None
    ) -> bool:
        """Publish the message to the dead letters: True once it is there (or, refused by Kafka for
        good, recorded in the log); False only on shutdown. Kafka away is waited out; a letter
        refused for its size is cut down (``DeadLetter.record``) until it fits; any other
        permanent refusal (``kafka_errors``) is logged with the original's origin, size and
        SHA-256, counted, and the partition moves on: retrying it could never succeed."""
        letter = DeadLetter.from_delivery(
            delivery, consumer=self.group, service=self.service, reason=reason, error=error, attempts=attempts
        )
        budgets = [self.dead_letter_max_bytes, *(b for b in SMALLER_BUDGETS if b < self.dead_letter_max_bytes)]
        delays = backoff_delays(self.backoff_initial, self.backoff_max)
        while True:
            sent = letter.record(budgets[0])
            try:
                await publish_dead_letter(self.broker, sent)
                break
            except Exception as exc:
                if is_too_large(exc) and len(budgets) > 1:
                    log.warning("dead letter too large for Kafka; cutting it further", error=describe(exc))
                    budgets.pop(0)
                    continue
                if await refused_for_good(exc, topics_dead_letters(), self.topic_exists):
                    metrics.DEAD_LETTERS_UNWRITTEN.labels(self.service, self.group, type(exc).__name__).inc()
                    log.error(
                        "dead letter refused by Kafka for good; the message is only on its own topic now",
                        origin=f"{delivery.topic}/{delivery.partition}@{delivery.offset}",
                        reason=reason,
                        error=error[:300],
                        kafka_error=describe(exc),
                        value_size=len(delivery.value),
                        value_sha256=hashlib.sha256(delivery.value).hexdigest(),
                    )
                    return True
                delay = next(delays)  # Kafka away: the message must not be skipped unrecorded
                log.warning("dead-letter publish failed; retrying", error=repr(exc), retry_in=round(delay, 2))
                if await self._stopping_within(delay):
                    return False
        if sent.truncated:
            metrics.DEAD_LETTERS_TRUNCATED.labels(self.service, self.group).inc()
        metrics.DEAD_LETTERS.labels(self.service, self.group, reason).inc()
        metrics.EVENTS_HANDLED.labels(self.service, self.group, event_type or "unparsed", "dead_lettered").inc()
        log.warning(
            "message dead-lettered",
            origin=f"{delivery.topic}/{delivery.partition}@{delivery.offset}",
            reason=reason,
            error=error[:300],
            truncated=",".join(sent.truncated),
        )
        return True

    async def _stopping_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
            return True
        except TimeoutError:
            return False


def read_event(delivery: Delivery) -> tuple[Event | None, str | None]:
    """The event a record holds, or None and why it is not one: headers that are not text, no
    value, a value that is not a valid event (not JSON, truncated, wrong types, an unknown event
    type or schema version), or a key that is not the event's own (its package or provider id:
    the key decides the partition, and so the order of a package's events). A record without a
    key (null or empty) is read: FastStream's in-memory test broker publishes an empty one."""
    if delivery.problem:
        return None, delivery.problem
    if delivery.value_is_null:
        return None, "the record has no value"
    try:
        event = parse_event(delivery.value)
    except ValidationError as exc:
        return None, _short(exc)
    except Exception as exc:  # whatever else arbitrary bytes provoke: still this record's fault
        return None, f"{type(exc).__name__}: {str(exc)[:400]}"
    if delivery.key and delivery.key != event.key.encode():
        return None, f"key {delivery.key[:80]!r} is not the event's key {event.key!r}"
    return event, None


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(message)'}: {validation_message(e)}" for e in exc.errors()[:5]
        )
    return str(exc)[:500]
