"""``homecare reporting generate`` and ``homecare reporting bench``: a generated history on the
topics of a namespace, and the reporting service's figures on it.

``generate`` writes :func:`services.bench.history.county_history` (years of county demand through
the real contracts) onto the topics of a namespace, batched (the producer's own batching and one
flush at the end, never a round trip per record).

``bench`` does the same in a namespace and a database of its own, then:

1. rebuilds a projection of it with ``homecare reporting rebuild`` as a child process - its wall
   time gives the events per second, its peak RSS (``ru_maxrss``) the projection's memory;
2. asks each KPI query of the last 365 days ``queries`` times (each query's p50 and p95, and the
   whole report's);
3. starts the reporting service on that database (its consumer group's offsets moved to the end
   of the topics first: the rebuild applied them), times ``homecare kpis --period 365d`` against it
   (a child process: start-up, a token from the identity provider, the request, the report) and
   reads the service's peak RSS (``VmHWM``);
4. removes its topics and database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from cryptography.fernet import Fernet

from schemas import topics as contract
from schemas.events import Envelope
from services.bench.history import county_history, topic_of
from services.bench.processes import ROOT, Stack, free_port
from services.operations.kpis import percentile
from services.reporting import app as reporting_app
from services.reporting import domain
from services.reporting import repository as repo
from services.runtime import clock, topics
from services.runtime.db import create_pool, migrate, provision
from services.runtime.kafka import (
    ensure_topics,
    kafka_security,
    partitions_of,
    provision_namespace,
    remove_namespace,
    topic_configs,
)
from services.runtime.oidc_client import identity_env
from services.runtime.settings import SharedSettings, admin_settings, load

KPI_DAYS = 365


def history_start(years: float, end: dt.date | None = None) -> dt.datetime:
    """Where ``years`` of history ending at the UK midnight that starts ``end`` (default today)
    begin: the last of the generated years is the last 365 days."""
    last = clock.uk_day_start(end or clock.uk_today())
    return last - dt.timedelta(days=round(365.25 * years))


async def write_history(events: Iterable[Envelope], namespace: str, *, kafka: str, security: dict[str, Any]) -> int:
    """Publish ``events`` onto the topics of ``namespace`` (each on its home topic, keyed as the
    services key it); returns how many. The producer batches (``linger_ms``, 1 MB batches, lz4 when
    the library is there), and the sends are not awaited one by one: only the flush at the end."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=50, max_batch_size=1 << 20, acks="all", **security)
    await producer.start()
    count = 0
    try:
        names = {t: topics.resolve(t, namespace) for t in contract.EVENT_TOPICS}
        for event in events:
            # send() waits only while the producer's buffer is full; the batches go out meanwhile.
            await producer.send(names[topic_of(event)], event.model_dump_json().encode(), key=event.key.encode())
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def generate(
    namespace: str, *, years: float = 5, packages_per_year: int = 10_000, seed: int = 17
) -> dict[str, Any]:
    """``homecare reporting generate``: the topics of ``namespace`` made (with their ACLs on a
    secured cluster) and ``years`` of county demand ending today written onto them. Returns the
    events written, the history's first and last UK day, and the seconds taken."""
    settings = admin_settings()
    kafka, security = settings.kafka_bootstrap_servers, kafka_security(settings)
    provision_namespace(kafka, namespace)
    await ensure_topics(
        kafka, security=security, namespace=namespace, configs=topic_configs(SharedSettings(), namespace)
    )
    start = history_start(years)
    began = time.perf_counter()
    events = county_history(start, years=years, packages_per_year=packages_per_year, seed=seed)
    count = await write_history(events, namespace, kafka=kafka, security=security)
    return {
        "namespace": namespace,
        "events": count,
        "from": clock.uk_date(start).isoformat(),
        "to": (clock.uk_today() - dt.timedelta(days=1)).isoformat(),
        "seconds": round(time.perf_counter() - began, 1),
    }


async def measure(
    years: float = 5, packages_per_year: int = 10_000, queries: int = 20, *, with_service: bool = True
) -> dict[str, Any]:
    """The figures, as a dict (seconds, events per second, megabytes); see the module's text.
    ``with_service=False`` leaves out step 3 (no identity provider needed)."""
    tag = uuid.uuid4().hex[:8]
    namespace = f"bench-reporting-{tag}"
    settings = admin_settings()
    kafka, security = settings.kafka_bootstrap_servers, kafka_security(settings)
    parts = urlsplit(settings.database_url)
    database = f"homecare_bench_reporting_{tag}"
    url = urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))
    figures: dict[str, Any] = {"years": years, "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    try:
        written = await generate(namespace, years=years, packages_per_year=packages_per_year)
        figures |= {"events": written["events"], "generate_seconds": written["seconds"]}
        await provision(url)
        env = os.environ | {"DATABASE_URL": url, "HOMECARE_NAMESPACE": namespace}
        load_before = os.getloadavg()[0]
        rebuilt = run_child([sys.executable, "-m", "services.cli.main", "reporting", "rebuild"], env)
        applied = int(re.search(r"(\d+) events applied", rebuilt["stdout"]).group(1))  # type: ignore[union-attr]
        figures |= {
            "rebuild_events": applied,
            "rebuild_seconds": round(rebuilt["seconds"], 1),
            "rebuild_events_per_second": round(applied / rebuilt["seconds"]),
            "rebuild_peak_rss_mb": rebuilt["peak_rss_mb"],
            # The rebuild's own CPU (its process, not PostgreSQL's): a figure the machine's other
            # load changes far less than the wall time.
            "rebuild_cpu_seconds": round(rebuilt["cpu_seconds"], 1),
            "rebuild_load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        }
        reporting = load("reporting", database_url=url)
        pool = await create_pool(reporting.service_dsn, schema="reporting", application="reporting-bench", size=2)
        try:
            await migrate(pool, "reporting", Path(reporting_app.__file__).parent / "migrations")
            figures |= await _time_queries(pool, queries)
        finally:
            await pool.close()
        if with_service:
            figures |= await _time_the_service(url, namespace, kafka, security, env)
    finally:
        await _remove(namespace, database, kafka, security, parts)
    return figures


async def _time_queries(pool: asyncpg.Pool, queries: int) -> dict[str, Any]:
    """Each KPI query of the last 365 days, ``queries`` times: p50 and p95 of each (seconds), and
    of the whole report (every query in one transaction, as ``GET /kpis`` asks)."""
    now = clock.now()
    period = domain.Period(clock.uk_day_start(clock.uk_today()) - dt.timedelta(days=KPI_DAYS), now)
    each: dict[str, list[float]] = {name: [] for name in repo.KPI_QUERIES}
    whole: list[float] = []
    async with pool.acquire() as conn:
        for _ in range(queries):
            for name, sql in repo.KPI_QUERIES.items():
                args: list[Any] = [period.start, period.end, period.zone, period.band]
                began = time.perf_counter()
                await conn.fetch(sql, *args, *([now] if name == "queue" else []))
                each[name].append(time.perf_counter() - began)
            began = time.perf_counter()
            report = await repo.kpi_figures(conn, period, now)
            whole.append(time.perf_counter() - began)
    p95 = {name: round(percentile(t, 95) or 0, 4) for name, t in each.items()}
    return {
        "kpi_year_packages": report["counts"]["requested"],
        "kpi_query_p95_s": p95,
        "kpi_query_p50_s": {name: round(percentile(t, 50) or 0, 4) for name, t in each.items()},
        "kpi_slowest_query": max(p95, key=lambda n: p95[n]),
        "kpi_report_p50_s": round(percentile(whole, 50) or 0, 4),
        "kpi_report_p95_s": round(percentile(whole, 95) or 0, 4),
    }


async def _time_the_service(
    url: str, namespace: str, kafka: str, security: dict[str, Any], env: dict[str, str]
) -> dict[str, Any]:
    """The reporting service on the rebuilt projection: ``homecare kpis --period 365d`` timed
    three times against it (the median and the slowest), and the service's peak RSS."""
    await _caught_up(namespace, kafka, security)
    identity = identity_env()
    logs = Path(tempfile.mkdtemp(prefix="bench-reporting-"))
    stack = Stack(
        # The service seals nothing here, but will not start without a key (services/runtime/sealing.py).
        env={"SECRETS_KEYS": Fernet.generate_key().decode()}
        | env
        | identity
        | {"LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"},
        logs=logs,
        ports={"reporting": free_port()},
    )
    stack.start("reporting")
    try:
        stack.wait_ready("reporting")
        timed = time_kpis_command(stack.url("reporting"), env | identity)
        rss = _peak_rss_mb(stack.procs["reporting"].pid)
    finally:
        stack.stop("reporting")
    return {
        "kpis_cli_seconds_median": timed["median_seconds"],
        "kpis_cli_seconds_max": timed["max_seconds"],
        "service_peak_rss_mb": rss,
    }


def time_kpis_command(reporting_url: str, env: dict[str, str]) -> dict[str, float]:
    """``homecare kpis --period 365d`` against the reporting service at ``reporting_url``, three
    times, each a new process (start-up, a token from the identity provider, the report, printing
    it): ``{"median_seconds", "max_seconds"}`` (issue 17: < 2 s)."""
    cli_env = env | {"REPORTING_URL": reporting_url}
    command = [sys.executable, "-m", "services.cli.main", "kpis", "--period", f"{KPI_DAYS}d"]
    seconds = sorted(run_child(command, cli_env)["seconds"] for _ in range(3))
    return {"median_seconds": round(seconds[1], 2), "max_seconds": round(seconds[-1], 2)}


async def _caught_up(namespace: str, kafka: str, security: dict[str, Any]) -> None:
    """Commit the reporting service's consumer group at the end of every event topic: the
    rebuild applied what they hold, so the service starts without replaying it."""
    names = [topics.resolve(t, namespace) for t in contract.EVENT_TOPICS]
    partitions = [TopicPartition(n, p) for n in names for p in await partitions_of(kafka, n, security)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, group_id=topics.group("reporting", namespace), enable_auto_commit=False, **security
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit({tp: OffsetAndMetadata(ends[tp], "") for tp in partitions})
    finally:
        await consumer.stop()


def run_child(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``command`` to its end: its output, wall and CPU seconds and peak RSS (MB), or an error
    naming its output when it fails."""
    with tempfile.TemporaryFile() as out:
        began = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} exited with {proc.returncode}: {text[-2000:]}")
    return {
        "stdout": text,
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def _peak_rss_mb(pid: int) -> int:
    """A running process's peak resident set (``VmHWM``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


async def _remove(namespace: str, database: str, kafka: str, security: dict[str, Any], parts: Any) -> None:
    """The namespace's topics and ACLs (generate granted them on a secured cluster) and the database."""
    await remove_namespace(kafka, namespace, security)
    server = await asyncpg.connect(urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, "")))
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await server.close()


if __name__ == "__main__":  # a quick look: python -m services.bench.reporting 0.1
    print(asyncio.run(measure(float(sys.argv[1]) if len(sys.argv) > 1 else 5, with_service=False)))
