"""The delivery contract against the real Kafka and PostgreSQL: outbox relay, inbox consumer,
dead letters, and offsets committed only after the database commit."""

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker

from schemas.events import PackagePlaced, PlacementConfirmed, Recipient
from services.notifications.app import build as build_notifications
from services.runtime import topics
from services.runtime.db import create_pool, migrate
from services.runtime.kafka import ensure_topics, kafka_security, make_broker, partitions_of, read_topic
from services.runtime.outbox import Relay, unit_of_work
from services.runtime.settings import load

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"


async def wait_for_records(bootstrap: str, topic: str, done, timeout: float = 30) -> list:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        records = await read_topic(bootstrap, topic)
        if done(records) or asyncio.get_running_loop().time() > deadline:
            return records
        await asyncio.sleep(0.3)


def confirmed(package_id: uuid.UUID, n: int) -> PlacementConfirmed:
    return PlacementConfirmed(
        correlation_id=package_id,
        package_id=package_id,
        provider_id="bluebell-care",
        recipients=[Recipient(kind="broker", recipient_id=f"step-{n}", channel="log")],
        confirmed_at=dt.datetime.now(dt.UTC),
    )


@pytest.fixture
async def notifications_pool(database_url):
    settings = load("notifications")
    pool = await create_pool(settings.service_dsn, schema="notifications", application="test", size=6)
    await migrate(pool, "notifications", Path(__file__).resolve().parents[2] / "services/notifications/migrations")
    yield pool
    await pool.close()


async def test_two_relays_publish_each_event_once_keyed_and_in_order_per_package(infra, notifications_pool):
    await ensure_topics(infra.kafka)
    packages = [uuid.uuid4() for _ in range(8)]
    written: dict[uuid.UUID, list[uuid.UUID]] = {p: [] for p in packages}
    for step in range(5):
        for p in packages:
            async with unit_of_work(notifications_pool) as uow:
                event = confirmed(p, step)
                await uow.emit(event)
                written[p].append(event.event_id)
    # A rolled-back unit of work leaves nothing to publish.
    ghost = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with unit_of_work(notifications_pool) as uow:
            await uow.emit(confirmed(ghost, 0))
            raise RuntimeError("handler failed after emitting")

    brokers = [make_broker(load("notifications")) for _ in range(2)]
    relays = []
    for broker in brokers:
        await broker.start()
        relays.append(Relay(notifications_pool, broker, service="notifications", batch_size=7, poll_seconds=0.01))
    for relay in relays:
        relay.start()
    try:
        topic = topics.resolve("notifications.confirmations")
        wanted = {str(p) for p in packages} | {str(ghost)}
        total = sum(len(v) for v in written.values())
        records = await wait_for_records(
            infra.kafka, topic, lambda rs: sum(r.key.decode() in wanted for r in rs) >= total
        )
        records = await read_topic(infra.kafka, topic, follow_seconds=1.0)  # a duplicate would show up now
    finally:
        for relay in relays:
            await relay.stop()
        for broker in brokers:
            await broker.stop()
    ours = [r for r in records if r.key.decode() in wanted]
    assert str(ghost) not in {r.key.decode() for r in ours}
    ids = [json.loads(r.value)["event_id"] for r in ours]
    assert len(ids) == len(set(ids)) == total, "every event published exactly once"
    for p in packages:
        mine = [r for r in ours if r.key.decode() == str(p)]
        assert len({r.partition for r in mine}) == 1, "one package, one partition"
        assert [uuid.UUID(json.loads(r.value)["event_id"]) for r in mine] == written[p], "in the order written"
        assert all(dict(r.headers)["event_type"] == b"PlacementConfirmed" for r in mine)
    assert sum(relay.published for relay in relays) >= total
    assert (
        await notifications_pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL AND aggregateid = ANY($1::text[])",
            [str(p) for p in packages],
        )
        == 0
    )


async def committed_and_end(bootstrap: str, group: str, topic: str) -> tuple[dict, dict]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security())
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **kafka_security())
    await consumer.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        ends = await consumer.end_offsets(partitions)
        committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
        return committed, {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()
        await admin.close()


async def test_a_consumer_applies_each_event_once_dead_letters_garbage_and_commits_after_the_database(
    infra, database_url
):
    service, _app = build_notifications(load("notifications", consumer_backoff_initial_seconds=0.05))
    await service.start()
    try:
        package_id = uuid.uuid4()
        placed = PackagePlaced.model_validate_json((SAMPLES / "PackagePlaced.v3.json").read_text()).model_copy(
            update={"event_id": uuid.uuid4(), "package_id": package_id, "correlation_id": package_id}
        )
        topic = topics.resolve("brokerage.packages")
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **kafka_security())
        await producer.start()
        try:
            for _ in range(3):  # the same event, delivered three times
                await producer.send_and_wait(topic, placed.model_dump_json().encode(), key=str(package_id).encode())
            await producer.send_and_wait(topic, b"\x00not an event", key=str(package_id).encode())
            await producer.send_and_wait(
                topic, b'{"event_type": "PackagePlaced", "schema_version": 7}', key=str(package_id).encode()
            )
        finally:
            await producer.stop()

        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            committed, ends = await committed_and_end(infra.kafka, topics.group("notifications"), topic)
            if committed and all(committed.get(p, 0) >= end for p, end in ends.items() if end):
                break
            await asyncio.sleep(0.3)
        assert all(committed.get(p, 0) == end for p, end in ends.items() if end), (committed, ends)

        rows = await service.pool.fetch("SELECT recipient_role FROM deliveries WHERE package_id = $1", package_id)
        losers = [pid for pid in placed.losing_provider_ids if pid != placed.provider_id]
        assert sorted(r["recipient_role"] for r in rows) == sorted(
            ["broker", "person", "provider"] + ["losing_bidder"] * len(losers)
        )
        # Applied once: one confirmation of the placement (its deliveries may fail meanwhile, each
        # with a NotificationFailed of its own: how soon depends on the channels configured).
        confirmations = await service.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE aggregateid = $1 AND type = 'PlacementConfirmed'", str(package_id)
        )
        assert confirmations == 1

        letters = await wait_for_records(
            infra.kafka, topics.dead_letters(), lambda rs: sum(r.key == str(package_id).encode() for r in rs) >= 2
        )
        mine = [dict((k, v.decode()) for k, v in r.headers) for r in letters if r.key == str(package_id).encode()]
        assert len(mine) == 2
        assert {h["x-dlq-origin-topic"] for h in mine} == {topic}
        assert all(h["x-dlq-reason"] == "invalid" and h["x-dlq-origin-offset"].isdigit() for h in mine)
        assert any("schema_version" in h["x-dlq-error"] for h in mine)
    finally:
        await service.stop()


async def test_published_outbox_rows_are_removed_after_their_retention(notifications_pool, infra):
    package_id = uuid.uuid4()
    async with unit_of_work(notifications_pool) as uow:
        await uow.emit(confirmed(package_id, 0))
        await uow.emit(confirmed(package_id, 1))
    await notifications_pool.execute(
        "UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id = (SELECT id FROM outbox WHERE "
        "aggregateid = $1 ORDER BY seq LIMIT 1)",
        str(package_id),
    )
    # A broker never started: clean_up publishes nothing.
    relay = Relay(notifications_pool, broker=KafkaBroker(), service="notifications", retention_seconds=3600)
    await relay.clean_up()
    left = await notifications_pool.fetch("SELECT published_at FROM outbox WHERE aggregateid = $1", str(package_id))
    assert [r["published_at"] for r in left] == [None], "the old published row goes, the unpublished one stays"
