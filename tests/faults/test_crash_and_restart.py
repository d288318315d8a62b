"""Nothing lost, nothing doubled - proven by breaking things in the middle of a run.

500+ package requests flow through the three services (separate processes) while the test
SIGKILLs each service several times and restarts it, restarts the Kafka broker and restarts
PostgreSQL. Afterwards, from the databases and from every Kafka topic: every package ended
in exactly one final state, none was placed twice, each placement was confirmed exactly once
per recipient, every outbox event was delivered and nothing is stuck.

The requests go in with an Idempotency-Key and are retried until answered, as a careful
client would: a request whose response was lost to a crash must not become two packages.
The figures are written to artifacts/fault-report.json (the README quotes them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.runtime import topics
from services.runtime.kafka import read_topic
from services.runtime.reference import load_framework
from services.simulator.synthetic import batch
from tests.support import SERVICES, assert_services_agree, event_of, staff

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = 520
RATE_PER_SECOND = 12  # spread the requests over ~45 s so the faults land mid-flow
FINAL = {"placed", "unplaced", "awaiting_approval"}  # where a package rests until someone acts


@pytest.fixture
def chaos_stack(stack, infra):
    if infra.source != "local processes":
        pytest.skip("restarts Kafka and PostgreSQL: needs the project's local processes, not " + infra.source)
    # The offer windows stay as configured (hours): a lost offer or answer would leave its
    # package offered, and the test would see it stuck, rather than a timer hiding the loss.
    return stack


def deploy(script: str, action: str) -> None:
    # Without the variables that tell the scripts "someone else's cluster: leave it alone".
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")}
    subprocess.run(
        ["bash", str(ROOT / "deploy" / script), action], check=True, capture_output=True, timeout=180, env=env
    )


async def post_with_retries(client: httpx.AsyncClient, url: str, body: dict, key: str, stats: Counter) -> str:
    """POST until answered. The same Idempotency-Key makes a retry safe after a lost response."""
    delay = 0.2
    while True:
        try:
            r = await client.post(url, json=body, headers={"Idempotency-Key": key}, timeout=10)
            if r.status_code in (200, 201):
                stats["retried_requests_answered_200" if r.status_code == 200 else "created"] += 1
                return r.json()["package_id"]
            assert r.status_code in (502, 503, 504), f"unexpected {r.status_code}: {r.text}"
            stats["http_503"] += 1
        except httpx.HTTPError:
            stats["connection_errors"] += 1
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)


async def chaos(stack, stats: Counter, stop: asyncio.Event) -> None:
    """The faults, at set moments of the run; each service is killed three times."""
    rng = random.Random(4)
    plan: list[tuple[str, str]] = []  # (what, to whom)
    for round_ in range(3):
        for name in SERVICES:
            plan.append(("kill", name))
        if round_ == 0:
            plan.append(("restart-kafka", "kafka"))
        if round_ == 1:
            plan.append(("restart-postgres", "postgresql"))
    for action, name in plan:
        if stop.is_set():
            break
        await asyncio.sleep(rng.uniform(1.5, 4.0))
        if action == "kill":
            stack.procs[name].send_signal(signal.SIGKILL)
            await asyncio.to_thread(stack.procs[name].wait)
            stats[f"sigkill_{name}"] += 1
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            stack.start(name)
            await asyncio.to_thread(stack.wait_ready, name, 180)
        elif action == "restart-kafka":
            await asyncio.to_thread(deploy, "kafka.sh", "restart")
            stats["kafka_restarts"] += 1
        else:
            await asyncio.to_thread(deploy, "postgres.sh", "restart")
            stats["postgres_restarts"] += 1


async def wait_until_final(db: str, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(db)
            try:
                rows = await conn.fetch(
                    "SELECT package_id::text, status FROM brokerage.packages WHERE package_id::text = ANY($1)", ids
                )
            finally:
                await conn.close()
            statuses = {r["package_id"]: r["status"] for r in rows}
            if len(statuses) == len(ids) and set(statuses.values()) <= FINAL:
                return statuses
        except (OSError, asyncpg.PostgresError):
            pass
        if time.monotonic() > deadline:
            return statuses
        await asyncio.sleep(1)


async def test_crashes_and_restarts_lose_nothing_and_double_nothing(chaos_stack, database_url, infra, artifacts):
    stack = chaos_stack
    stats: Counter = Counter()
    requests = batch(load_framework(), PACKAGES, seed=99)
    since = dt.datetime.now(dt.UTC)  # the packages this test makes are those requested from now on
    keys = [f"chaos-{uuid.uuid4()}" for _ in requests]
    stop = asyncio.Event()
    started = time.monotonic()

    async with httpx.AsyncClient(auth=staff()) as client:
        faults = asyncio.create_task(chaos(stack, stats, stop))

        async def send(i: int) -> str:
            await asyncio.sleep(i / RATE_PER_SECOND)
            return await post_with_retries(client, f"{stack.url('brokerage')}/packages", requests[i], keys[i], stats)

        ids = await asyncio.gather(*(send(i) for i in range(len(requests))))
        await faults  # let every planned fault happen
        stop.set()

    statuses = await wait_until_final(database_url, ids, timeout=300)
    elapsed = time.monotonic() - started
    await asyncio.sleep(3)  # the last confirmations and relays

    conn = await asyncpg.connect(database_url)
    try:
        # Nothing lost: every request is one package, and every package is final.
        assert len(set(ids)) == len(ids) == PACKAGES
        # One package per request, however often it was retried (the runtime's Idempotency-Key table
        # answers each key with its first package).
        made = await conn.fetchval("SELECT count(*) FROM brokerage.packages WHERE requested_at >= $1", since)
        kept = await conn.fetch(
            "SELECT response->>'package_id' AS package_id FROM brokerage.idempotency_keys WHERE key = ANY($1)", keys
        )
        assert made == PACKAGES, "a retried request made a second package"
        assert sorted(r["package_id"] for r in kept) == sorted(map(str, ids))
        stuck = {i: s for i, s in statuses.items() if s not in FINAL}
        assert len(statuses) == PACKAGES and not stuck, f"{len(stuck)} packages not final: {list(stuck.items())[:5]}"
        # Every outbox event delivered: nothing unpublished in any service.
        for schema in SERVICES:
            assert await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL") == 0, schema
        placed = {
            r["package_id"]: r
            for r in await conn.fetch(
                "SELECT package_id::text, provider_id, requested_by FROM brokerage.packages WHERE package_id::text = "
                "ANY($1) AND status = 'placed'",
                ids,
            )
        }
        confirmations = await conn.fetch(
            "SELECT package_id::text, recipient_role, recipient_id, channel, count(*) n FROM notifications.deliveries "
            "WHERE event_type = 'PackagePlaced' AND package_id::text = ANY($1) GROUP BY 1, 2, 3, 4",
            ids,
        )
        providers_placements = {
            r["package_id"]: r["provider_id"]
            for r in await conn.fetch(
                "SELECT package_id::text, provider_id FROM providers.placements WHERE package_id::text = ANY($1) "
                "AND ended_at IS NULL",
                ids,
            )
        }
        over = await conn.fetchval(
            "SELECT count(*) FROM providers.providers WHERE committed_hours + held_hours > weekly_capacity_hours"
        )
        # Bids hold capacity until their package is decided; one awaiting a broker's approval
        # of an above-rate bid is not decided yet.
        awaiting = [i for i, s in statuses.items() if s == "awaiting_approval"]
        held = await conn.fetchval(
            "SELECT coalesce(sum(held_hours), 0) FROM providers.offers WHERE package_id::text = ANY($1)",
            [i for i in ids if i not in awaiting],
        )
    finally:
        await conn.close()

    # Exactly one confirmation per placement per recipient, and the providers agree on the winner.
    per_package = defaultdict(set)
    for r in confirmations:
        assert r["n"] == 1
        per_package[r["package_id"]].add((r["recipient_role"], r["recipient_id"]))
    for package_id, row in placed.items():
        told = {("provider", row["provider_id"]), ("broker", row["requested_by"]), ("person", package_id)}
        assert told <= per_package[package_id], package_id
        assert {role for role, _ in per_package[package_id] - told} <= {"losing_bidder"}, package_id
        assert providers_placements.get(package_id) == row["provider_id"]
    assert set(providers_placements) == set(placed)
    assert over == 0 and held == 0, "capacity over-committed or still held after every package is final"
    await assert_services_agree(database_url)  # and on every provider's committed hours

    # None placed twice, on the wire: one outcome event (by event id) per package, one confirmation event per placement.
    outcome_ids, confirmed_ids, on_wire = defaultdict(set), defaultdict(set), 0
    wanted = set(ids)
    for topic in (topics.resolve("brokerage.packages"), topics.resolve("notifications.confirmations")):
        for record in await read_topic(infra.kafka, topic):
            event = event_of(record)
            if event is None or event.get("package_id") not in wanted:
                continue
            on_wire += 1
            if event["event_type"] in ("PackagePlaced", "PackageUnplaced", "ExceptionRequested"):
                outcome_ids[event["package_id"]].add((event["event_type"], event["event_id"]))
            elif event["event_type"] == "PlacementConfirmed":
                confirmed_ids[event["package_id"]].add(event["event_id"])
    doubled = [p for p, events in outcome_ids.items() if len(events) != 1]
    assert not doubled and set(outcome_ids) == wanted, f"packages with {len(doubled)} doubled or missing outcomes"
    assert {p for p, e in outcome_ids.items() if next(iter(e))[0] == "PackagePlaced"} == set(placed)
    assert all(len(confirmed_ids[p]) == 1 for p in placed) and set(confirmed_ids) == set(placed)

    # No consumer dead-lettered anything from this run.
    letters = [r for r in await read_topic(infra.kafka, topics.dead_letters()) if (r.key or b"").decode() in wanted]
    assert not letters, f"{len(letters)} dead letters: {[dict(r.headers).get('x-dlq-error') for r in letters[:3]]}"

    report: dict[str, Any] = {
        "packages": PACKAGES,
        "placed": len(placed),
        "unplaced": sum(s == "unplaced" for s in statuses.values()),
        "awaiting_approval": sum(s == "awaiting_approval" for s in statuses.values()),
        "sigkills": {name: stats[f"sigkill_{name}"] for name in SERVICES},
        "kafka_restarts": stats["kafka_restarts"],
        "postgres_restarts": stats["postgres_restarts"],
        "requests_retried_after_errors": stats["connection_errors"] + stats["http_503"],
        "retries_answered_with_the_existing_package": stats["retried_requests_answered_200"],
        "events_on_the_wire_for_these_packages": on_wire,
        "lost": len(stuck) + (PACKAGES - len(statuses)),
        "doubled": len(doubled),
        "seconds": round(elapsed, 1),
    }
    (artifacts / "fault-report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert all(v == 3 for v in report["sigkills"].values())
    assert report["kafka_restarts"] == 1 and report["postgres_restarts"] == 1
