"""``homecare reporting bench``: the reporting projection's figures on a generated history.

Writes ``packages`` packages' events (:mod:`services.bench.history`, through the real contracts)
onto the topics of a namespace of its own, rebuilds a projection of them in a database of its own
(as ``homecare reporting rebuild`` does), then asks every KPI for a year ``queries`` times.
Reports events applied per second, this process's peak RSS, and the KPI queries' median and 95th
percentile. Removes its topics and database afterwards.
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
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from services.bench.history import history, topic_of
from services.operations.kpis import percentile
from services.reporting import app as reporting_app
from services.reporting import domain, handlers
from services.reporting import repository as repo
from services.runtime import topics
from services.runtime.db import create_pool, migrate, provision
from services.runtime.kafka import ensure_topics, kafka_security, topic_configs
from services.runtime.settings import SharedSettings, admin_settings, load

START = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)


async def measure(packages: int = 5000, queries: int = 30) -> dict[str, Any]:
    """The figures, as a dict (seconds, events per second, megabytes)."""
    tag = uuid.uuid4().hex[:8]
    namespace = f"bench-reporting-{tag}"
    settings = admin_settings()
    kafka, security = settings.kafka_bootstrap_servers, kafka_security(settings)
    parts = urlsplit(settings.database_url)
    database = f"homecare_bench_reporting_{tag}"
    url = urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))
    await ensure_topics(
        kafka, security=security, namespace=namespace, configs=topic_configs(SharedSettings(), namespace)
    )
    events = history(START, packages=packages, seed=1)
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=20, **security)
        await producer.start()
        try:
            for e in events:
                topic = topics.resolve(topic_of(e), namespace)
                await producer.send(topic, e.model_dump_json().encode(), key=e.key.encode())
            await producer.flush()
        finally:
            await producer.stop()
        await provision(url)
        reporting = load("reporting", database_url=url)
        pool = await create_pool(reporting.service_dsn, schema="reporting", application="reporting-bench", size=2)
        try:
            await migrate(pool, "reporting", Path(reporting_app.__file__).parent / "migrations")
            began = time.perf_counter()
            rebuilt = await handlers.rebuild(pool, kafka, security=security, namespace=namespace)
            seconds = time.perf_counter() - began
            period = domain.Period(START, START + dt.timedelta(days=365))
            timings = []
            for _ in range(queries):
                began = time.perf_counter()
                async with pool.acquire() as conn:
                    figures = await repo.kpi_figures(conn, period, START + dt.timedelta(days=730))
                timings.append(time.perf_counter() - began)
        finally:
            await pool.close()
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka, **security)
        await admin.start()
        try:
            await admin.delete_topics(topics.all_topics(namespace))
        finally:
            await admin.close()
        server = await asyncpg.connect(urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, "")))
        try:
            await server.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await server.close()
    return {
        "packages": packages,
        "events": len(events),
        "rebuild_seconds": round(seconds, 2),
        "rebuild_events_per_second": round(rebuilt.applied / seconds),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "kpi_year_packages": figures["counts"]["requested"],
        "kpi_query_p50_s": round(percentile(timings, 50) or 0, 4),
        "kpi_query_p95_s": round(percentile(timings, 95) or 0, 4),
    }
