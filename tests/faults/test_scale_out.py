"""Two instances of every service, one of each killed and started again mid-run (issue 22).

A few hundred packages go in through both brokerage instances while the second instance of each
service is SIGKILLed and, a little later, started again - a rolling replacement at its rudest.
From the databases and the topics afterwards: every package ended in one final state with one
outcome on the wire, no offer round was opened twice (a timer firing on both instances would),
one confirmation per recipient and channel, the services agree on who holds each package and on
every provider's committed hours, both instances' relays published while both were alive, and
each survivor took its dead partner's outbox buckets (tests/integration/test_relay_sharing.py
shows how they split them). The figures go to artifacts/scale-out-report.json.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import signal
import time
import uuid
from collections import Counter, defaultdict

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from schemas import topics as contract
from services.runtime import topics
from services.runtime.kafka import kafka_security, read_topic
from services.runtime.reference import load_framework
from services.simulator.synthetic import batch
from tests.faults.test_crash_and_restart import post_with_retries, wait_until_final
from tests.support import SERVICES, assert_services_agree, event_of, staff

PACKAGES = 240
# Members of its consumer group per instance: reporting counts the dead letters with a subscriber
# of their own in its group (services/reporting/app.py), beside the one for the event topics.
MEMBERS = {"reporting": 2}
RATE_PER_SECOND = 10


def second(name: str) -> str:
    return f"{name}-2"


async def metric(client: httpx.AsyncClient, url: str, name: str) -> float:
    text = (await client.get(f"{url}/metrics", timeout=5)).text
    found = re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.MULTILINE)
    return sum(float(v) for v in found)


async def pauses(client: httpx.AsyncClient, url: str) -> tuple[float, float]:
    """The count and total seconds of the rebalance pauses an instance's consumers recorded."""
    return (
        await metric(client, url, "homecare_consumer_rebalance_pause_seconds_count"),
        await metric(client, url, "homecare_consumer_rebalance_pause_seconds_sum"),
    )


async def group_state(bootstrap: str, group: str) -> tuple[str, int]:
    """A consumer group's state (Stable, PreparingRebalance...) and its member count."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_security())
    await admin.start()
    try:
        for response in await admin.describe_consumer_groups([group]):
            for entry in response.groups:
                return entry[2], len(entry[5])
    finally:
        await admin.close()
    return "Dead", 0


async def test_two_instances_of_each_service_lose_and_double_nothing_when_one_dies(
    stack, database_url, infra, artifacts
):
    for name in SERVICES:
        stack.start(second(name), name)
    for name in SERVICES:
        await asyncio.to_thread(stack.wait_ready, second(name))
    stats: Counter = Counter()
    report: dict = {
        "packages": PACKAGES,
        "published_before_the_kill": {},
        "takeover_seconds": {},  # the survivor's relay claims all 16 buckets
        "partitions_reassigned_seconds": {},  # the group is Stable again with the survivor alone
        # What each survivor's consumers recorded (services/runtime/consumer.py RebalancePauses):
        # the rebalances they went through and their total pause, from the kill until the
        # restarted instances are ready (the count includes the dead ones' leaving, at least).
        "survivor_rebalance_pauses": {},
    }
    requests = batch(load_framework(), PACKAGES, seed=2022)
    keys = [f"scale-{uuid.uuid4()}" for _ in requests]
    since = dt.datetime.now(dt.UTC)  # the packages this test makes are those requested from now on
    entry = [stack.url("brokerage"), stack.url(second("brokerage"))]
    try:
        async with httpx.AsyncClient(auth=staff()) as client, httpx.AsyncClient() as probe:

            async def send(i: int) -> str:
                await asyncio.sleep(i / RATE_PER_SECOND)
                return await post_with_retries(client, f"{entry[i % 2]}/packages", requests[i], keys[i], stats)

            async def replace_second_instances() -> None:
                await asyncio.sleep(PACKAGES / RATE_PER_SECOND / 3)  # a third of the way in
                for name in SERVICES:
                    report["published_before_the_kill"][name] = [
                        await metric(probe, stack.internal_url(n), "homecare_outbox_published_total")
                        for n in (name, second(name))
                    ]
                paused_before = {name: await pauses(probe, stack.internal_url(name)) for name in SERVICES}
                for name in SERVICES:
                    stack.procs[second(name)].send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                for name in SERVICES:
                    await asyncio.to_thread(stack.procs[second(name)].wait)
                # The survivors take the dead relays' buckets once their heartbeats lapse, and the
                # dead consumers' partitions once the broker's session timeout (10 s) runs out.
                pending = set(SERVICES)
                groups = set(SERVICES)
                while (pending or groups) and time.monotonic() - killed_at < 60:
                    for name in list(pending):
                        if await metric(probe, stack.internal_url(name), "homecare_outbox_relay_share") == 16:
                            report["takeover_seconds"][name] = round(time.monotonic() - killed_at, 1)
                            pending.discard(name)
                    for name in list(groups):
                        if await group_state(infra.kafka, topics.group(name)) == ("Stable", MEMBERS.get(name, 1)):
                            report["partitions_reassigned_seconds"][name] = round(time.monotonic() - killed_at, 1)
                            groups.discard(name)
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2)
                for name in SERVICES:
                    stack.start(second(name), name)
                for name in SERVICES:
                    await asyncio.to_thread(stack.wait_ready, second(name), 180)
                for name in SERVICES:
                    count, seconds = await pauses(probe, stack.internal_url(name))
                    report["survivor_rebalance_pauses"][name] = {
                        "rebalances": int(count - paused_before[name][0]),
                        "seconds": round(seconds - paused_before[name][1], 2),
                    }

            replaced = asyncio.create_task(replace_second_instances())
            ids = await asyncio.gather(*(send(i) for i in range(PACKAGES)))
            await replaced
        statuses = await wait_until_final(database_url, ids, timeout=240)
        await asyncio.sleep(3)  # the last confirmations
    finally:
        for name in SERVICES:
            if stack.procs[second(name)].poll() is None:
                stack.stop(second(name))

    # Both relays of every publishing service published while both were alive (reporting's outbox
    # holds only its dead letters: none in a healthy run).
    publishers = set(contract.OWNER.values())
    for name, (first, other) in report["published_before_the_kill"].items():
        if name in publishers:
            assert first > 0 and other > 0, f"{name}: one relay stood by ({first}, {other} rows published)"
    assert set(report["takeover_seconds"]) == set(SERVICES), "a survivor never took the dead relay's buckets"
    assert set(report["partitions_reassigned_seconds"]) == set(SERVICES), "a group never settled on its survivor"
    # Each survivor's consumers gave up their partitions and were assigned again when the dead
    # instance was counted out: the pause they saw is recorded (its length is the benchmark's).
    assert all(p["rebalances"] >= 1 for p in report["survivor_rebalance_pauses"].values()), report[
        "survivor_rebalance_pauses"
    ]

    assert len(set(ids)) == PACKAGES
    stuck = {i: s for i, s in statuses.items() if s not in ("placed", "unplaced", "awaiting_approval")}
    assert len(statuses) == PACKAGES and not stuck, f"{len(stuck)} packages not final"
    conn = await asyncpg.connect(database_url)
    try:
        # One package per request, however often it was retried (the runtime's Idempotency-Key table
        # answers each key with its first package).
        made = await conn.fetchval("SELECT count(*) FROM brokerage.packages WHERE requested_at >= $1", since)
        kept = await conn.fetch(
            "SELECT response->>'package_id' AS package_id FROM brokerage.idempotency_keys WHERE key = ANY($1)", keys
        )
        confirmations = await conn.fetch(
            "SELECT package_id::text, recipient_role, recipient_id, channel, event_type, count(*) n "
            "FROM notifications.deliveries WHERE package_id::text = ANY($1) GROUP BY 1, 2, 3, 4, 5",
            ids,
        )
        for schema in SERVICES:
            assert await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL") == 0, schema
    finally:
        await conn.close()
    assert made == PACKAGES, "a retried request made a second package"
    assert sorted(r["package_id"] for r in kept) == sorted(map(str, ids))
    assert all(r["n"] == 1 for r in confirmations), "someone was told twice"
    await assert_services_agree(database_url, timeout=60)

    # On the wire: one outcome per package, one OfferMade per package and round (a window or
    # re-offer timer firing on both instances would open a round twice).
    wanted, outcomes, rounds = set(ids), defaultdict(set), defaultdict(set)
    for record in await read_topic(infra.kafka, topics.resolve("brokerage.packages")):
        event = event_of(record)
        # The poison tests put malformed records on the same topics: only our packages' events count.
        if event is None or not isinstance(event.get("package_id"), str) or event["package_id"] not in wanted:
            continue
        if event["event_type"] in ("PackagePlaced", "PackageUnplaced", "ExceptionRequested"):
            outcomes[event["package_id"]].add(event["event_id"])
        elif event["event_type"] == "OfferMade":
            rounds[(event["package_id"], event["offer_round"])].add(event["event_id"])
    assert set(outcomes) == wanted and all(len(e) == 1 for e in outcomes.values()), "an outcome doubled or missing"
    assert all(len(e) == 1 for e in rounds.values()), "an offer round opened twice"

    # Reporting ran as two instances too, one killed mid-run: its projection has every package once,
    # with each offer round and placement counted once, however the survivor was redelivered records.
    rounds_of = Counter(package_id for package_id, _ in rounds)
    expected = {i: (rounds_of[i], int(statuses[i] == "placed")) for i in ids}
    projected: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT package_id::text, offer_rounds, placements FROM reporting.packages WHERE package_id::text = "
                "ANY($1)",
                ids,
            )
        finally:
            await conn.close()
        projected = {r["package_id"]: (r["offer_rounds"], r["placements"]) for r in rows}
        if projected == expected:
            break
        await asyncio.sleep(1)
    wrong = {i: (projected.get(i), e) for i, e in expected.items() if projected.get(i) != e}
    assert not wrong, (
        f"{len(wrong)} packages projected wrongly by reporting (projected, expected): {list(wrong.items())[:5]}"
    )

    report |= {
        "placed": sum(s == "placed" for s in statuses.values()),
        "unplaced": sum(s == "unplaced" for s in statuses.values()),
        "requests_retried_after_errors": stats["connection_errors"] + stats["http_503"],
        "offer_rounds": len(rounds),
    }
    (artifacts / "scale-out-report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
