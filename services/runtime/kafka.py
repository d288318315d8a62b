"""Kafka plumbing shared by the services, the CLI and the tests: the broker, topics, reading."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from schemas import topics
from services.runtime import topics as runtime_topics
from services.runtime.settings import ServiceSettings


def make_broker(settings: ServiceSettings) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.service,
        # The relay's guarantee rests on these: no duplicates from producer retries, and a
        # send only counts once every in-sync replica has it.
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        graceful_timeout=settings.graceful_timeout_seconds,
        log_level=logging.DEBUG,  # our own structured lines describe each event
    )


async def ensure_topics(bootstrap: str, replication_factor: int = 1) -> None:
    """Create the system's topics with their partition count, if missing.

    The registry topic is compacted: it holds each provider's latest profile for as long as
    the provider exists, so a new brokerage instance can always rebuild its view from it.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        compacted = runtime_topics.resolve(topics.REGISTRY)
        missing = [
            NewTopic(t, num_partitions=topics.PARTITIONS, replication_factor=replication_factor,
                     topic_configs={"cleanup.policy": "compact"} if t == compacted else {})
            for t in runtime_topics.all_topics() if t not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    """The topic's partitions, straight from the cluster ([] when the topic does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        return sorted(p["partition"] for d in described if d["error_code"] == 0 for p in d["partitions"])
    finally:
        await admin.close()


async def read_topic(bootstrap: str, topic: str, *, follow_seconds: float = 0.0) -> list[ConsumerRecord]:
    """Every record on the topic from the beginning to its current end (without a consumer
    group, so nothing is committed); with ``follow_seconds``, also what arrives meanwhile."""
    partitions = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        loop = asyncio.get_running_loop()
        follow_until = loop.time() + follow_seconds
        while True:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            caught_up = all([await consumer.position(tp) >= ends[tp] for tp in partitions])
            if caught_up and loop.time() >= follow_until:
                return records
    finally:
        await consumer.stop()
