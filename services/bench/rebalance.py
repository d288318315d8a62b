"""``homecare bench-rebalance``: the pauses a consumer-group rebalance causes the instances that
stay up when another instance of their service dies and comes back (issue 22, decision 0135).

One run: a fresh database and topic namespace, two instances of every service as separate
processes, a steady trickle of package requests through the first brokerage instance (the
survivor: the load balancer of a real deployment would stop sending to a dead instance), then
two scenarios, each on the second instance of every service at once:

1. **leave, then rejoin** (as ``tests/faults/test_scale_out.py``): SIGKILL; wait until each
   group is stable with the survivors alone (the broker counts a dead member out after the
   session timeout, 10 s); start it again and wait until each group is stable with both;
2. **replace at once** (a supervisor restarting a crashed process, or a rolling replacement):
   SIGKILL and start again at once; wait until each group is stable with both.

Each survivor times every pause it sees (from its partitions being revoked to its next
assignment: ``RebalancePauses`` in :mod:`services.runtime.consumer`) and exposes them on its
``/metrics`` (``homecare_consumer_rebalance_pause_seconds``); the difference of its count and sum
across each step gives the rebalances it went through and their mean pause. With ``static``,
every instance has a group instance id of its own (``<SERVICE>_CONSUMER_GROUP_INSTANCE_ID``:
static membership), so one that comes back within the session timeout takes its partitions back
without a rebalance.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiokafka.admin import AIOKafkaAdminClient

from services.bench.benchmark import _drop, _with_database, bench_market, post_packages
from services.bench.processes import SERVICES, Stack, start_stack, stop_stack
from services.runtime import topics
from services.runtime.db import provision
from services.runtime.kafka import kafka_security
from services.runtime.oidc_client import user_auth
from services.runtime.reference import load_framework
from services.runtime.settings import admin_settings
from services.simulator.synthetic import batch

# Members of a service's consumer group per instance: reporting counts the dead letters with a
# subscriber of its own in its group (services/reporting/app.py), beside the one for the events.
MEMBERS = {"reporting": 2}
PAUSES = "homecare_consumer_rebalance_pause_seconds"


def second(name: str) -> str:
    return f"{name}-2"


async def pause_totals(client: httpx.AsyncClient, stack: Stack, name: str) -> tuple[float, float]:
    """The count and sum (seconds) of the rebalance pauses process ``name`` has recorded."""
    text = (await client.get(f"{stack.internal_url(name)}/metrics", timeout=10)).text
    count = sum(float(v) for v in re.findall(rf"^{PAUSES}_count\{{[^}}]*\}} ([0-9.e+]+)$", text, re.MULTILINE))
    total = sum(float(v) for v in re.findall(rf"^{PAUSES}_sum\{{[^}}]*\}} ([0-9.e+]+)$", text, re.MULTILINE))
    return count, total


async def wait_stable(
    admin: AIOKafkaAdminClient, groups: dict[str, int], since: float | None = None, timeout: float = 120
) -> dict[str, float]:
    """Wait until every group is Stable with its number of members; the seconds from ``since``
    (a ``time.monotonic()``, default now) until each was."""
    began = since if since is not None else time.monotonic()
    settled: dict[str, float] = {}
    while len(settled) < len(groups) and time.monotonic() - began < timeout:
        for group in [g for g in groups if g not in settled]:
            # One group a request: aiokafka 0.14 fails to decode some answers about several.
            for response in await admin.describe_consumer_groups([group]):
                for entry in response.groups:
                    if entry[2] == "Stable" and len(entry[5]) == groups[group]:
                        settled[group] = round(time.monotonic() - began, 1)
        await asyncio.sleep(0.25)
    missing = set(groups) - set(settled)
    if missing:
        raise RuntimeError(f"groups never stable with their members: {sorted(missing)}")
    return settled


async def _snapshot(client: httpx.AsyncClient, stack: Stack) -> dict[str, tuple[float, float]]:
    return {name: await pause_totals(client, stack, name) for name in SERVICES}


def _pauses(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, dict]:
    """Per service: the survivor's rebalances (one per consumer per rebalance) and mean pause."""
    figures = {}
    for name in SERVICES:
        count = after[name][0] - before[name][0]
        seconds = after[name][1] - before[name][1]
        figures[name] = {"rebalances": int(count), "mean_pause_s": round(seconds / count, 2) if count else 0.0}
    return figures


async def measure(
    *, static: bool = False, rate: float = 2.0, session_timeout_ms: int | None = None, settle_seconds: float = 3.0
) -> dict[str, Any]:
    """The figures of one run (see the module's text): per scenario and service, the rebalances
    the survivor went through and their mean pause (seconds), and how long each group took to be
    stable again. ``session_timeout_ms`` sets every instance's
    ``<SERVICE>_CONSUMER_SESSION_TIMEOUT_MS`` (default: the services' own, 10 s). Uses a database
    and a namespace of its own and removes the database."""
    settings = admin_settings()
    tag = uuid.uuid4().hex[:8]
    database = f"homecare_bench_rebalance_{tag}"
    namespace = f"bench-rebalance-{tag}"
    url = _with_database(settings.database_url, database)
    await provision(url)
    figures: dict[str, Any] = {
        "static_membership": static,
        "session_timeout_ms": session_timeout_ms or 10_000,
        "load_average": [round(os.getloadavg()[0], 1)],
    }
    stopping = asyncio.Event()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **kafka_security(settings))
    stack: Stack | None = None
    load: asyncio.Task[int] | None = None
    # Whatever fails from here on, the processes are stopped and the database dropped.
    try:
        folder = Path(tempfile.mkdtemp(prefix="homecare-bench-rebalance-"))
        market = bench_market(folder / "reference")
        extra = {"HOMECARE_REFERENCE_DIR": str(market)}
        if static:  # one stable name per instance
            extra |= {f"{name.upper()}_CONSUMER_GROUP_INSTANCE_ID": f"{name}-1" for name in SERVICES}
        if session_timeout_ms:
            extra |= {f"{name.upper()}_CONSUMER_SESSION_TIMEOUT_MS": str(session_timeout_ms) for name in SERVICES}
        stack = start_stack(url, settings.kafka_bootstrap_servers, namespace, folder / "logs", extra_env=extra)
        for name in SERVICES:
            env = {f"{name.upper()}_CONSUMER_GROUP_INSTANCE_ID": f"{name}-2"} if static else None
            stack.start(second(name), name, env=env)
        for name in SERVICES:
            await asyncio.to_thread(stack.wait_ready, second(name), 180)
        await admin.start()
        both = {topics.group(name, namespace): 2 * MEMBERS.get(name, 1) for name in SERVICES}
        alone = {topics.group(name, namespace): MEMBERS.get(name, 1) for name in SERVICES}
        await wait_stable(admin, both)
        load = asyncio.create_task(_trickle(stack, rate, stopping))
        async with httpx.AsyncClient() as client:
            await asyncio.sleep(settle_seconds)

            before = await _snapshot(client, stack)
            killed = _kill_seconds(stack)
            left = await wait_stable(admin, alone, since=killed)
            await asyncio.sleep(settle_seconds)
            after_leave = await _snapshot(client, stack)
            started = _start_seconds(stack)
            for name in SERVICES:
                await asyncio.to_thread(stack.wait_ready, second(name), 180)
            rejoined = await wait_stable(admin, both, since=started)
            await asyncio.sleep(settle_seconds)
            after_rejoin = await _snapshot(client, stack)

            killed = _kill_seconds(stack)
            _start_seconds(stack)
            for name in SERVICES:
                await asyncio.to_thread(stack.wait_ready, second(name), 180)
            ready = round(time.monotonic() - killed, 1)
            # A dynamic member's replacement is a new member, and the dead one is counted out only
            # after the session timeout: until then the group may look stable with two.
            timeout = (session_timeout_ms or 10_000) / 1000
            await asyncio.sleep(max(settle_seconds, timeout + 5 - (time.monotonic() - killed)))
            await wait_stable(admin, both)
            await asyncio.sleep(settle_seconds)
            after_replace = await _snapshot(client, stack)
        stopping.set()
        sent = await load

        def by_service(seconds: dict[str, float]) -> dict[str, float]:
            return {name: seconds[topics.group(name, namespace)] for name in SERVICES}

        figures |= {
            "leave": _pauses(before, after_leave) | {"stable_again_s": by_service(left)},
            "rejoin": _pauses(after_leave, after_rejoin) | {"stable_again_s": by_service(rejoined)},
            "replace": _pauses(after_rejoin, after_replace) | {"restarted_ready_s": ready},
            "requests_sent": sent,
        }
        figures["load_average"].append(round(os.getloadavg()[0], 1))
    finally:
        stopping.set()
        if load is not None and not load.done():
            with contextlib.suppress(Exception):
                await load
        await admin.close()
        if stack is not None:
            stop_stack(stack)
        await _drop(settings.database_url, database)
    return figures


def _kill_seconds(stack: Stack) -> float:
    """SIGKILL the second instance of every service; when (``time.monotonic()``)."""
    killed = time.monotonic()
    for name in SERVICES:
        stack.procs[second(name)].send_signal(signal.SIGKILL)
    for name in SERVICES:
        stack.procs[second(name)].wait()
    return killed


def _start_seconds(stack: Stack) -> float:
    """Start the second instances again (with static membership, under the same instance ids:
    the stack keeps each instance's own settings); when."""
    started = time.monotonic()
    for name in SERVICES:
        stack.start(second(name), name)
    return started


async def _trickle(stack: Stack, rate: float, stopping: asyncio.Event) -> int:
    """Package requests at ``rate`` per second through the first brokerage until ``stopping``,
    so the consumers have work in hand when their group rebalances; returns how many were sent."""
    framework = load_framework()
    auth = user_auth("demo-broker")
    sent = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while not stopping.is_set():
            requests = batch(framework, max(1, round(rate)), seed=sent + 1)
            with contextlib.suppress(RuntimeError, aiohttp.ClientError):  # a refusal must not stop the clock
                sent += len(
                    await post_packages(
                        session, [stack.url("brokerage")], requests, rate=rate, concurrency=4, auth=auth
                    )
                )
    return sent
