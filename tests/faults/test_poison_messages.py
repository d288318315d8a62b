"""Thousands of malformed and random messages on every topic the services consume: no service
crashes, every bad message reaches the dead-letter topic with its origin (once per consumer
group that read it), and valid traffic keeps flowing meanwhile. Then a dead letter is replayed
with the CLI and comes back through the consumer."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schemas.events import parse_event
from services.bench.driver import FINAL, place_batch
from services.runtime import topics
from services.runtime.kafka import kafka_security, read_topic
from services.runtime.reference import load_framework
from services.simulator.synthetic import batch

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "schemas" / "samples"
PER_TOPIC = 700

# Which consumer groups read each topic, and which sample events belong on it.
CONSUMERS = {
    "brokerage.packages": ("providers", "notifications"),
    "providers.answers": ("brokerage",),
    "providers.registry": ("brokerage",),
}
SAMPLES_ON = {
    "brokerage.packages": ["PackageRequested", "OfferMade", "PackagePlaced", "PackageUnplaced"],
    "providers.answers": ["BidSubmitted", "OfferDeclined"],
    "providers.registry": ["ProviderUpdated"],
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def poison(draw, topic: str) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "mutated", "mutated"]))
    if kind == "bytes":
        raw = draw(st.binary(max_size=300))
    elif kind == "json":
        raw = json.dumps(draw(json_values)).encode()
    else:
        event = json.loads((SAMPLES / f"{draw(st.sampled_from(SAMPLES_ON[topic]))}.v1.json").read_text())
        key = draw(st.sampled_from(sorted(event)))
        how = draw(st.sampled_from(["drop", "replace", "type", "version"]))
        if how == "drop":
            del event[key]
        elif how == "replace":
            event[key] = draw(json_values)
        elif how == "type":
            event["event_type"] = draw(st.text(max_size=30))
        else:
            event["schema_version"] = draw(st.integers().filter(lambda v: v != 1))
        raw = json.dumps(event).encode()
    try:  # only messages that really are invalid
        parse_event(raw)
        valid = True
    except ValueError:
        valid = False
    assume(not valid)
    return raw


def generate(topic: str, count: int) -> list[bytes]:
    found: list[bytes] = []

    @settings(
        max_examples=count, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(poison(topic))
    def collect(message: bytes) -> None:
        found.append(message)

    collect()
    return found


async def test_poison_messages_are_dead_lettered_and_valid_traffic_flows(stack, infra, database_url):
    messages = {topic: generate(topic, PER_TOPIC) for topic in CONSUMERS}
    total = sum(len(m) for m in messages.values())
    assert total > 1500

    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, enable_idempotence=True, linger_ms=5, **kafka_security())
    await producer.start()

    async def flood() -> None:
        futures = []
        for topic, batch_ in messages.items():
            for i, raw in enumerate(batch_):
                futures.append(await producer.send(topics.resolve(topic), raw, key=f"poison-{topic}-{i}".encode()))
        await asyncio.gather(*futures)

    try:
        valid = batch(load_framework(), 28, seed=31)
        placed, _ = await asyncio.gather(place_batch(stack.url("brokerage"), valid, timeout=240), flood())
    finally:
        await producer.stop()
    assert {p["status"] for p in placed} <= FINAL and len(placed) == 28

    expected = {
        (f"poison-{topic}-{i}", topics.group(group))
        for topic, batch_ in messages.items()
        for i in range(len(batch_))
        for group in CONSUMERS[topic]
    }
    deadline = time.monotonic() + 180
    while True:
        got, origins = set(), defaultdict(set)
        for r in await read_topic(infra.kafka, topics.dead_letters()):
            key = (r.key or b"").decode(errors="replace")
            if key.startswith("poison-"):
                headers = {k: v.decode() for k, v in r.headers}
                got.add((key, headers["x-dlq-consumer"]))
                origins[key].add((headers["x-dlq-origin-topic"], headers["x-dlq-origin-offset"].isdigit()))
        if expected <= got or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    assert not (expected - got), f"{len(expected - got)} poison messages not dead-lettered"
    for key, origin in origins.items():
        topic = key.removeprefix("poison-").rsplit("-", 1)[0]
        assert origin == {(topics.resolve(topic), True)}, (key, origin)

    for name, proc in stack.procs.items():
        assert proc.poll() is None, f"{name} died"
        assert httpx.get(f"{stack.internal_url(name)}/health/ready").status_code == 200


def homecare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        cwd=ROOT,
    )


async def test_the_cli_lists_shows_and_replays_dead_letters(stack, infra):
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **kafka_security())
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.resolve("providers.answers"), b'{"event_type": "BidSubmitted"}', key=b"cli-replay-me"
        )
    finally:
        await producer.stop()

    async def find(predicate):
        for _ in range(60):
            listed = [
                json.loads(line)
                for line in homecare("dead-letters", "list", "--json").stdout.splitlines()
                if line.strip()
            ]
            hits = [d for d in listed if predicate(d)]
            if hits:
                return hits
            await asyncio.sleep(1)
        raise AssertionError("dead letter not listed")

    [letter] = await find(
        lambda d: (
            d["key"] == "cli-replay-me"
            and d["consumer"] == topics.group("brokerage")  # reporting reads the topic too: a letter of its own
            and d["reason"] == "invalid"
            and d["origin"].startswith(topics.resolve("providers.answers"))
        )
    )
    shown = json.loads(homecare("dead-letters", "show", letter["id"]).stdout)
    assert shown["key"] == "cli-replay-me" and shown["consumer"] == topics.group("brokerage")
    replay = homecare("dead-letters", "replay", letter["id"])
    assert replay.returncode == 0 and "replayed 1" in replay.stdout
    # Still invalid, so it comes back - carrying the header that says it was a replay.
    records = []
    for _ in range(60):
        records = [
            r
            for r in await read_topic(infra.kafka, topics.dead_letters())
            if r.key == b"cli-replay-me" and dict(r.headers).get("x-replayed-from") == letter["id"].encode()
        ]
        if records:
            break
        await asyncio.sleep(1)
    assert records, "the replayed message did not go back through the consumer"
    assert homecare("dead-letters", "show", "99:99999").returncode != 0
