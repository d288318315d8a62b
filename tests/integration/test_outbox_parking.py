"""Outbox rows Kafka refuses for good are parked, not retried forever (runtime.outbox.Relay on
the real Kafka and PostgreSQL): counted, listed for operators, the rows behind them published,
and the later rows of the same package held behind the parked one until an operator retries or
discards it."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.operations.outbox import discard_rows, parked_rows, retry_rows
from services.runtime import metrics, topics
from services.runtime.db import create_pool, migrate
from services.runtime.kafka import ensure_topics, kafka_security, make_broker, read_topic
from services.runtime.outbox import OUTBOX_INSERT, Relay, bucket_of
from services.runtime.settings import admin_settings, load

SCHEMA = "relay_test"
CONFIRMATIONS = "notifications.confirmations"
SMALL = "relay-test.small"  # a topic of the test's own whose records may be 2,000 bytes at most


@pytest.fixture(scope="module")
async def relay_pool(infra, database_url, tmp_path_factory):
    """A schema of the test's own with the runtime's outbox: its parked rows concern no service."""
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    finally:
        await admin.close()
    pool = await create_pool(database_url, schema=SCHEMA, application="relay-test", size=4)
    await migrate(pool, SCHEMA, tmp_path_factory.mktemp("relay-migrations"))
    await ensure_topics(infra.kafka, security=kafka_security())
    kafka_admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka, **kafka_security())
    await kafka_admin.start()
    try:
        if topics.resolve(SMALL) not in await kafka_admin.list_topics():
            await kafka_admin.create_topics(
                [NewTopic(topics.resolve(SMALL), 1, 1, topic_configs={"max.message.bytes": "2000"})]
            )
    finally:
        await kafka_admin.close()
    yield pool
    await pool.close()


def as_administrator():
    """A service's settings signed in as the cluster's administrator: the relay under test writes
    topics of the test's own (and one no one may have), which belong to no service's principal."""
    admin = admin_settings()
    identity = ("kafka_security_protocol", "kafka_sasl_mechanism", "kafka_username", "kafka_password")
    return load("notifications").model_copy(update={k: getattr(admin, k) for k in identity})


async def write(pool: asyncpg.Pool, aggregate: str, topic: str, padding: int = 0) -> uuid.UUID:
    """One outbox row (the relay publishes the payload as it is, whatever it holds)."""
    event_id = uuid.uuid4()
    payload = {"event_id": str(event_id), "event_type": "RelayTest", "pad": "x" * padding}
    await pool.execute(
        OUTBOX_INSERT,
        event_id,
        "package",
        aggregate,
        "RelayTest",
        topic,
        json.dumps(payload),
        json.dumps({"correlation_id": aggregate}),
        bucket_of(aggregate),
    )
    return event_id


async def state(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await pool.fetch(
        """SELECT id, CASE WHEN published_at IS NOT NULL THEN 'published' WHEN discarded_at IS NOT NULL
                           THEN 'discarded' WHEN parked_at IS NOT NULL THEN 'parked' ELSE 'waiting' END AS s
             FROM outbox WHERE id = ANY($1::uuid[])""",
        ids,
    )
    return {r["id"]: r["s"] for r in rows}


async def on_kafka(bootstrap: str, topic: str, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The event ids among ``ids`` that are on the topic, in the order they are there."""
    wanted = {str(i) for i in ids}
    found = []
    for r in await read_topic(bootstrap, topic, security=kafka_security()):
        event_id = dict(r.headers).get("event_id", b"").decode()
        if event_id in wanted:
            found.append(uuid.UUID(event_id))
    return found


async def relay_until_settled(relay: Relay, rounds: int = 20) -> None:
    """Run the relay's batches until there is nothing left it can settle (errors are the test's)."""
    for _ in range(rounds):
        if not await relay.publish_batch():
            return
    raise AssertionError("the relay kept finding rows to publish")


def parked_count(error: str) -> float:
    return metrics.OUTBOX_PARKED_TOTAL.labels("relay-test", error)._value.get()


async def test_a_row_kafka_refuses_is_parked_counted_listed_and_the_rows_behind_it_publish(
    infra, database_url, relay_pool
):
    topic = topics.resolve(CONFIRMATIONS)
    small = topics.resolve(SMALL)
    held_package, other_package, third_package = (str(uuid.uuid4()) for _ in range(3))
    # Written in this order; the relay reads them in one batch.
    too_large = await write(relay_pool, held_package, topic, padding=1_100_000)  # above the producer's 1 MiB
    behind_it = await write(relay_pool, held_package, topic)  # same package: must wait behind it
    other = await write(relay_pool, other_package, topic)  # another package: must not wait
    over_topic_limit = await write(relay_pool, third_package, small, padding=5_000)  # the broker refuses it
    beside_it = await write(relay_pool, other_package, small)  # may share its request: published
    nowhere = await write(relay_pool, str(uuid.uuid4()), "no.such-topic")  # not a topic of the system
    after_all = await write(relay_pool, third_package, topic)  # behind a parked row of its package
    ids = [too_large, behind_it, other, over_topic_limit, beside_it, nowhere, after_all]
    before = {e: parked_count(e) for e in ("MessageSizeTooLargeError", "UnknownTopicOrPartitionError")}

    broker = make_broker(as_administrator())
    await broker.start()
    relay = Relay(
        relay_pool, broker, service="relay-test", known_topics={*topics.all_topics(), small}, poll_seconds=0.01
    )
    try:
        await relay_until_settled(relay)
        assert await state(relay_pool, ids) == {
            too_large: "parked",
            behind_it: "waiting",
            other: "published",
            over_topic_limit: "parked",
            beside_it: "published",
            nowhere: "parked",
            after_all: "waiting",
        }
        assert await on_kafka(infra.kafka, topic, ids) == [other]
        assert await on_kafka(infra.kafka, small, ids) == [beside_it]
        assert parked_count("MessageSizeTooLargeError") - before["MessageSizeTooLargeError"] == 2
        assert parked_count("UnknownTopicOrPartitionError") - before["UnknownTopicOrPartitionError"] == 1
        assert await Relay.parked_rows(relay_pool) == (3, 2)

        # What an operator sees: each parked row, its error, and how many rows wait behind it.
        listed = {uuid.UUID(r["id"]): r for r in await parked_rows(database_url, (SCHEMA,))}
        assert set(listed) == {too_large, over_topic_limit, nowhere}
        assert listed[too_large]["held"] == 1 and listed[over_topic_limit]["held"] == 1
        assert "MessageSizeTooLarge" in listed[too_large]["error"]
        assert listed[too_large]["payload_bytes"] > 1_100_000

        # Retried while the cause remains: parked again, nothing overtakes it.
        dsn = database_url
        await retry_rows(dsn, [str(too_large)], (SCHEMA,))
        await relay_until_settled(relay)
        assert (await state(relay_pool, [too_large, behind_it])) == {too_large: "parked", behind_it: "waiting"}

        # Discarded by an operator: the row is given up, and the rows behind it are published in order.
        await discard_rows(dsn, [str(too_large), str(over_topic_limit)], "ops.test", (SCHEMA,))
        await relay_until_settled(relay)
        assert await state(relay_pool, [too_large, behind_it, after_all]) == {
            too_large: "discarded",
            behind_it: "published",
            after_all: "published",
        }
        published = await on_kafka(infra.kafka, topic, ids)  # partition by partition: compared as a set
        assert sorted(published) == sorted([other, behind_it, after_all]), "each once, the discarded never"
        with pytest.raises(LookupError):
            await retry_rows(dsn, [str(behind_it)], (SCHEMA,))  # not parked
    finally:
        await relay.stop()
        await broker.stop()
        await discard_rows(database_url, [str(nowhere)], "test cleanup", (SCHEMA,))


async def test_the_relay_loop_keeps_publishing_past_a_parked_row(infra, database_url, relay_pool):
    """The relay as it runs in a service: a refused row is parked once, not retried forever,
    and what comes after it is published without anyone's help."""
    topic = topics.resolve(CONFIRMATIONS)
    refused = await write(relay_pool, str(uuid.uuid4()), topic, padding=1_100_000)
    later = [await write(relay_pool, str(uuid.uuid4()), topic) for _ in range(5)]
    broker = make_broker(as_administrator())
    await broker.start()
    relay = Relay(relay_pool, broker, service="relay-test", poll_seconds=0.01)
    relay.start()
    try:
        for _ in range(200):
            states = await state(relay_pool, [refused, *later])
            if all(states[i] == "published" for i in later):
                break
            await asyncio.sleep(0.05)
        assert states == {refused: "parked"} | {i: "published" for i in later}
        assert relay.parked == 1
    finally:
        await relay.stop()
        await broker.stop()
        await discard_rows(database_url, [str(refused)], "test cleanup", (SCHEMA,))
