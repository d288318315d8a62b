"""Consumer lag: per consumer group and partition, the committed offset, the end offset, the lag
and the age of the oldest unprocessed event; groups with no active member show 0 members.
``homecare lag`` prints it; the console's consumer lag page shows it."""

from __future__ import annotations

from schemas import topics as contract
from services.runtime import topics
from services.runtime.kafka import consumer_lag
from services.runtime.settings import SERVICES


def subscriptions() -> dict[str, list[str]]:
    """Every service's consumer group and the topics it reads, as deployed."""
    return {topics.group(s): [topics.resolve(t) for t in contract.CONSUMED_BY[s]] for s in SERVICES}


async def lag(bootstrap: str) -> list[dict]:
    """One row per group and partition: ``{group, topic, partition, committed, end, lag (events),
    oldest_unprocessed_age_s (seconds, None when nothing waits), members}``."""
    rows = await consumer_lag(bootstrap, subscriptions())
    return [r.__dict__ | {"lag": r.lag} for r in rows]
