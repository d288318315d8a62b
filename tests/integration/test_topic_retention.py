"""Retention is set on the topics where they are made, and again on topics that exist (on the real
Kafka): each topic's retention.ms from the settings, the registry compacted and kept."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from schemas import topics as contract
from services.runtime import topics
from services.runtime.kafka import DAY_MS, ensure_topics, kafka_security, partitions_of, topic_config, topic_configs
from services.runtime.settings import SharedSettings, admin_settings

pytestmark = pytest.mark.infra


async def test_topics_get_their_configured_retention_when_made_and_when_they_exist(infra, namespace):
    ns = f"{namespace}-retention"
    security = kafka_security(admin_settings(infra.kafka))
    settings = SharedSettings(kafka_retention_packages_days=30, kafka_retention_dead_letters_days=0)
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka, **security)
    await admin.start()
    try:
        await ensure_topics(infra.kafka, security=security, namespace=ns, configs=topic_configs(settings, ns))
        packages = topics.resolve(contract.PACKAGES, ns)
        assert await topic_config(infra.kafka, packages, "retention.ms", security) == str(30 * DAY_MS)
        answers = topics.resolve(contract.ANSWERS, ns)
        assert await topic_config(infra.kafka, answers, "retention.ms", security) == str(2557 * DAY_MS)  # the default
        dead_letters = topics.resolve(contract.DEAD_LETTERS, ns)
        assert await topic_config(infra.kafka, dead_letters, "retention.ms", security) == "-1"  # 0 days: kept
        # A topic that exists takes a new decision too, and the registry stays compacted.
        later = SharedSettings(kafka_retention_packages_days=0.5)
        await ensure_topics(infra.kafka, security=security, namespace=ns, configs=topic_configs(later, ns))
        # The controller commits the change; the broker applies it from the metadata log a moment later.
        for _ in range(50):
            if await topic_config(infra.kafka, packages, "retention.ms", security) == str(DAY_MS // 2):
                break
            await asyncio.sleep(0.2)
        assert await topic_config(infra.kafka, packages, "retention.ms", security) == str(DAY_MS // 2)
        registry = topics.resolve(contract.REGISTRY, ns)
        assert await topic_config(infra.kafka, registry, "cleanup.policy", security) == "compact"
    finally:
        await admin.delete_topics(topics.all_topics(ns))
        await admin.close()


async def test_topics_are_made_with_the_configured_partition_count_and_never_resized_at_start(infra, namespace):
    """KAFKA_PARTITIONS (decision 0115): the count a topic is made with; a topic that exists keeps
    its count, since adding partitions moves keys between them (an operator's step)."""
    ns = f"{namespace}-partitions"
    security = kafka_security(admin_settings(infra.kafka))
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka, **security)
    await admin.start()
    try:
        await ensure_topics(
            infra.kafka, security=security, namespace=ns, configs=topic_configs(namespace=ns), partitions=3
        )
        packages = topics.resolve(contract.PACKAGES, ns)
        for _ in range(50):  # the brokers learn of a new topic from the controller a moment later
            if await partitions_of(infra.kafka, packages, security):
                break
            await asyncio.sleep(0.2)
        assert await partitions_of(infra.kafka, packages, security) == [0, 1, 2]
        await ensure_topics(
            infra.kafka, security=security, namespace=ns, configs=topic_configs(namespace=ns), partitions=6
        )
        assert await partitions_of(infra.kafka, packages, security) == [0, 1, 2]
    finally:
        await admin.delete_topics(topics.all_topics(ns))
        await admin.close()
