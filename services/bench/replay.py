"""``homecare bench-replay``: how long ``homecare simulate --replay`` takes over a year of history.

Records ``days`` of generated history (:mod:`services.bench.history`: ``layers`` histories of
one package every 3 hours each, interleaved, so ``8 * layers`` requests a day) into a reporting
projection in a database of its own, through the projection's own writers (``handlers.apply``
in batches, as ``homecare reporting rebuild`` does; no Kafka), then times the replay as the
command runs it: read the period from the projection, calibrate, replay under two policies in
two processes. Drops its database afterwards.
"""

from __future__ import annotations

import datetime as dt
import resource
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.bench.history import history
from services.reporting import app as reporting_app
from services.reporting import handlers
from services.runtime.db import create_pool, migrate, provision
from services.runtime.reference import load_framework
from services.runtime.settings import admin_settings, load
from services.simulator import simulation
from services.simulator.recorded import read_history, replay_of, replay_summary
from services.simulator.variants import BUILT_IN

START = dt.datetime(2025, 4, 1, 0, 0, tzinfo=dt.UTC)


async def record(pool: asyncpg.Pool, days: int, layers: int) -> int:
    """Write ``layers`` interleaved histories of ``days`` into the projection; the events written."""
    per_layer = days * 8
    events = [
        e
        for layer in range(layers)
        for e in history(START + dt.timedelta(hours=layer * 3 / layers), packages=per_layer, seed=100 + layer)
    ]
    for i in range(0, len(events), 2000):
        chunk = events[i : i + 2000]
        async with pool.acquire() as conn, conn.transaction():
            await handlers.apply(conn, chunk)  # type: ignore[arg-type]  # history() gives Envelopes of Event types
    return len(events)


async def measure(days: int = 365, layers: int = 3, jobs: int = 2) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figures (seconds, megabytes) of a replay of ``days`` under prime-supplementary and
    open-framework, and the replay's result (as ``homecare simulate --replay`` writes it)."""
    tag = uuid.uuid4().hex[:8]
    parts = urlsplit(admin_settings().database_url)
    database = f"homecare_bench_replay_{tag}"
    url = urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))
    await provision(url)
    try:
        reporting = load("reporting", database_url=url)
        pool = await create_pool(reporting.service_dsn, schema="reporting", application="replay-bench", size=2)
        try:
            await migrate(pool, "reporting", Path(reporting_app.__file__).parent / "migrations")
            events = await record(pool, days, layers)
            end = START + dt.timedelta(days=days)
            began = time.perf_counter()
            async with pool.acquire() as conn:
                past = await read_history(conn, START, end)
            read_s = time.perf_counter() - began
        finally:
            await pool.close()
        cpu = time.process_time()
        replay, skipped = replay_of(past, load_framework(), simulation.DemandParams(days=past.days))
        result = simulation.simulate(
            load_framework(),
            [],
            [BUILT_IN["prime-supplementary"], BUILT_IN["open-framework"]],
            demand=simulation.DemandParams(days=past.days),
            jobs=jobs,
            replay=replay,
        )
        total_s = time.perf_counter() - began
        calibrate_cpu = time.process_time() - cpu
    finally:
        server = await asyncpg.connect(urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, "")))
        try:
            await server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await server.close()
    figures = {
        "days": days,
        "packages": len(past.packages),
        "answers": len(past.answers),
        "events_recorded": events,
        "skipped": skipped,
        "read_seconds": round(read_s, 2),
        "replay_seconds": round(total_s, 2),  # read + calibrate + replay under both policies (wall)
        "cpu_seconds_per_policy": {n: r["cpu_seconds"] for n, r in result["policies"].items()},
        "calibrate_and_replay_cpu_here": round(calibrate_cpu, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "never_placed": {n: r["packages"]["never_placed"] for n, r in result["policies"].items()},
    }
    return figures, result | {"replay": replay_summary(past, replay, skipped)}
