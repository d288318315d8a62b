"""The consumers' poll (services/runtime/kafka.py ``poll_without_sleeping``, decision 0163): it
waits for records inside aiokafka's ``getmany`` and returns them at once; only a poll that came
back empty at once sleeps, so that a consumer with nothing to wait on cannot spin. The wait in a
real subscriber is counted in tests/integration/test_consumer_records.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from services.runtime import kafka

REAL_SLEEP = asyncio.sleep


class Consumer:
    """What the poll asks of aiokafka's consumer: ``getmany(timeout_ms=, max_records=)``."""

    def __init__(self, answers: list[dict], wait: float = 0.0) -> None:
        self.answers = answers
        self.wait = wait
        self.asked: list[dict] = []

    async def getmany(self, **kwargs) -> dict:
        self.asked.append(kwargs)
        await REAL_SLEEP(self.wait)
        return self.answers.pop(0)


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """The sleeps the poll takes of its own (the fake consumer's wait is not one)."""
    taken: list[float] = []

    async def sleep(seconds: float) -> None:
        taken.append(seconds)
        await REAL_SLEEP(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return taken


def subscriber() -> SimpleNamespace:
    sub = SimpleNamespace(max_records=7)
    kafka.poll_without_sleeping(sub, wait_ms=100)
    return sub


async def test_records_come_back_as_one_batch_across_partitions_without_a_sleep(slept):
    consumer = Consumer([{"tp0": ["a", "b"], "tp1": ["c"]}])
    assert await subscriber().get_msg(consumer) == ("a", "b", "c")
    assert consumer.asked == [{"timeout_ms": 100, "max_records": 7}]
    assert slept == []


async def test_a_poll_that_waited_its_time_in_vain_polls_again_without_sleeping(slept):
    consumer = Consumer([{}], wait=0.06)  # more than half of the 100 ms it may wait
    assert await subscriber().get_msg(consumer) == ()
    assert slept == []


async def test_a_poll_empty_at_once_sleeps_so_that_it_cannot_spin(slept):
    consumer = Consumer([{}, {}])
    sub = subscriber()
    assert await sub.get_msg(consumer) == ()
    assert await sub.get_msg(consumer) == ()
    assert slept == [0.05, 0.05]
