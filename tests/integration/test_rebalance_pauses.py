"""The pause a rebalance of its consumer group causes a running instance (decision 0135).

Two instances of the notifications service in this process, on the real Kafka: when the second
joins, and again when it leaves, the first gives up its partitions and is assigned again, and
each time it records how long it held none (``homecare_consumer_rebalance_pause_seconds``, which
``homecare bench-rebalance`` reads from each survivor). The first assignment of a starting
instance is no pause and is not counted. Timings are not asserted: the benchmark reports them.
"""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from services.notifications.app import build as build_notifications
from services.runtime import topics
from services.runtime.kafka import kafka_security
from services.runtime.settings import load


def pauses(group: str) -> tuple[float, float]:
    """The histogram's count and sum (seconds) for the notifications consumers of ``group``."""
    labels = {"service": "notifications", "group": group}
    return (
        REGISTRY.get_sample_value("homecare_consumer_rebalance_pause_seconds_count", labels) or 0.0,
        REGISTRY.get_sample_value("homecare_consumer_rebalance_pause_seconds_sum", labels) or 0.0,
    )


async def members_when_stable(bootstrap: str, group: str, members: int, timeout: float = 60) -> None:
    """Wait until ``group`` is Stable with ``members`` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security())
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for response in await admin.describe_consumer_groups([group]):
                for entry in response.groups:
                    if entry[2] == "Stable" and len(entry[5]) == members:
                        return
            await asyncio.sleep(0.3)
    finally:
        await admin.close()
    raise AssertionError(f"{group} never stable with {members} members")


async def counted_more_than(group: str, before: float, timeout: float = 30) -> tuple[float, float]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline and pauses(group)[0] <= before:
        await asyncio.sleep(0.2)
    return pauses(group)


async def test_a_running_instance_times_the_pause_when_another_joins_and_leaves_its_group(infra, database_url):
    group = topics.group("notifications")
    first, _ = build_notifications(load("notifications"))
    await first.start()
    try:
        await members_when_stable(infra.kafka, group, 1)
        started = pauses(group)  # the first assignment: nothing revoked, no pause counted
        second, _ = build_notifications(load("notifications"))
        await second.start()
        try:
            await members_when_stable(infra.kafka, group, 2)
            joined = await counted_more_than(group, started[0])
            assert joined[0] > started[0], "the first instance's pause when the second joined was not recorded"
            assert joined[1] > started[1]
        finally:
            await second.stop()
        await members_when_stable(infra.kafka, group, 1)
        left = await counted_more_than(group, joined[0])
        assert left[0] > joined[0], "the pause when the second instance left was not recorded"
        assert left[1] > joined[1]
    finally:
        await first.stop()
