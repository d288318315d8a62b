"""``homecare reporting rebuild`` on the real Kafka and PostgreSQL: what the topics hold, replayed
into the projection - interrupted and resumed, then again from nothing - gives the KPIs of the
topic-scan computation over the same events; a record that is not an event is passed over."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.records_to_delete import RecordsToDelete

from services.bench.history import history, topic_of
from services.operations import kpis as topic_scan
from services.reporting import app as reporting_app
from services.reporting import domain, handlers
from services.reporting import repository as repo
from services.runtime import topics
from services.runtime.db import create_pool, migrate, provision
from services.runtime.kafka import (
    ensure_topics,
    kafka_security,
    partitions_of,
    read_topic,
    topic_config,
    topic_configs,
)
from services.runtime.reference import load_framework
from services.runtime.settings import SharedSettings, admin_settings, load
from tests.support import drop_database

pytestmark = pytest.mark.infra

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 6, 1, 7, 0, tzinfo=dt.UTC)


NOW = START + dt.timedelta(days=20)


@pytest.fixture(scope="module")
async def rebuild_db(infra, database_url):
    """(pool, administrator's URL): the reporting schema in a database of the test's own (not the
    end-to-end stack's)."""
    name = urlsplit(database_url).path.lstrip("/") + "_rebuild"
    url = infra.database_url(name)
    await provision(url)
    settings = load("reporting", database_url=url)
    pool = await create_pool(settings.service_dsn, schema="reporting", application="rebuild-test", size=2)
    await migrate(pool, "reporting", Path(reporting_app.__file__).parent / "migrations")
    yield pool, url
    await pool.close()
    await drop_database(infra, name)


def rounded(value):
    """Floats to the millisecond: SQL's interpolated median may differ from Python's in the last bit."""
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


async def kpis(pool) -> dict:
    period = domain.Period(START - dt.timedelta(hours=1), START + dt.timedelta(days=5))
    async with pool.acquire() as conn:
        figures = await repo.kpi_figures(conn, period, NOW)
    report = domain.report(
        figures, period=period, now=NOW, framework=load_framework(), thresholds=topic_scan.load_thresholds()
    )
    return {k: v for k, v in report.items() if k not in ("period", "more")}


async def test_rebuild_is_resumable_idempotent_and_gives_the_topic_scan_kpis(infra, namespace, rebuild_db):
    rebuild_pool, database = rebuild_db
    ns = f"{namespace}-rebuild"
    security = kafka_security(admin_settings(infra.kafka))
    await ensure_topics(infra.kafka, security=security, namespace=ns, configs=topic_configs(SharedSettings(), ns))
    events = history(START, packages=30, seed=21)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **security)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(
                topics.resolve(topic_of(e), ns),
                e.model_dump_json().encode(),
                key=e.key.encode(),
                headers=[("event_type", type(e).__name__.encode())],
            )
        await producer.send_and_wait(topics.resolve("brokerage.packages", ns), b"not an event", key=b"x")
    finally:
        await producer.stop()

    first = await handlers.rebuild(
        rebuild_pool, infra.kafka, security=security, namespace=ns, fresh=True, batch_size=5, stop_after=40
    )
    assert not first.finished and 0 < first.applied < len(events)
    second = await handlers.rebuild(rebuild_pool, infra.kafka, security=security, namespace=ns, batch_size=5)
    assert second.finished
    assert first.applied + second.applied == len(events)  # resumed where it stopped: nothing read twice
    assert first.passed_over + second.passed_over == 1

    old = topic_scan.compute(
        [json.loads(e.model_dump_json()) for e in events],
        start=START - dt.timedelta(hours=1),
        end=START + dt.timedelta(days=5),
        now=NOW,
        framework=load_framework(),
        thresholds=topic_scan.load_thresholds(),
    )
    old.pop("period")
    resumed = await kpis(rebuild_pool)
    assert old["packages"]["requested"] > 20
    assert rounded({k: v for k, v in resumed.items() if k != "projection"}) == rounded(json.loads(json.dumps(old)))

    # Nothing new on the topics: a rebuild applies nothing; a fresh one gives the same projection.
    again = await handlers.rebuild(rebuild_pool, infra.kafka, security=security, namespace=ns)
    assert (again.applied, again.finished) == (0, True)
    fresh = await handlers.rebuild(rebuild_pool, infra.kafka, security=security, namespace=ns, fresh=True)
    assert fresh.applied == len(events) and await kpis(rebuild_pool) == resumed

    # The command itself, as an operator runs it, on this database and namespace.
    env = os.environ | {"DATABASE_URL": database, "HOMECARE_NAMESPACE": ns}
    command = [sys.executable, "-m", "services.cli.main", "reporting", "rebuild", "--fresh", "--batch-size", "9"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(events)} events applied, 1 records passed over (finished)" in done.stdout
    assert await kpis(rebuild_pool) == resumed


async def test_kpis_of_a_period_kafka_no_longer_holds_stay_exact(infra, namespace, rebuild_db):
    """A topic's retention set to a second and its records expired: the topic-scan KPIs would see
    nothing of the period, the projection's KPIs are what they were. The broker looks for expired
    segments only every five minutes (log.retention.check.interval.ms), so the test removes the
    expired records itself with DeleteRecords - what the broker's retention does to them."""
    rebuild_pool, _ = rebuild_db
    ns = f"{namespace}-expiry"
    security = kafka_security(admin_settings(infra.kafka))
    second = 1 / 86_400
    brief = SharedSettings(
        kafka_retention_packages_days=second,
        kafka_retention_answers_days=second,
        kafka_retention_confirmations_days=second,
    )
    await ensure_topics(infra.kafka, security=security, namespace=ns, configs=topic_configs(brief, ns))
    assert await topic_config(infra.kafka, topics.resolve("brokerage.packages", ns), "retention.ms", security) == "1000"
    events = history(START, packages=30, seed=21)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **security)
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(
                topics.resolve(topic_of(e), ns), e.model_dump_json().encode(), key=e.key.encode()
            )
    finally:
        await producer.stop()
    built = await handlers.rebuild(rebuild_pool, infra.kafka, security=security, namespace=ns, fresh=True)
    assert built.finished and built.applied == len(events)
    before = await kpis(rebuild_pool)
    assert before["packages"]["requested"] > 20

    await asyncio.sleep(1.2)  # past the retention
    names = [topics.resolve(t, ns) for t in ("brokerage.packages", "providers.answers", "notifications.confirmations")]
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka, **security)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka, **security)
    await consumer.start()
    try:
        partitions = [TopicPartition(n, p) for n in names for p in await partitions_of(infra.kafka, n, security)]
        ends = await consumer.end_offsets(partitions)
        await admin.delete_records({tp: RecordsToDelete(ends[tp]) for tp in partitions if ends[tp]})
    finally:
        await consumer.stop()
        await admin.close()
    for name in names:
        assert await read_topic(infra.kafka, name, security=security) == []  # Kafka holds nothing of the period
    assert await kpis(rebuild_pool) == before
    # A rebuild (not --fresh) over what is left changes nothing either.
    after = await handlers.rebuild(rebuild_pool, infra.kafka, security=security, namespace=ns)
    assert (after.applied, after.finished) == (0, True) and await kpis(rebuild_pool) == before


async def test_the_benchmark_reports_its_figures_and_leaves_nothing_behind(infra):
    from services.bench.reporting import measure

    # A week of county demand (40 packages); the service's step needs the identity provider and
    # is left out here.
    figures = await measure(years=0.02, packages_per_year=2000, queries=3, with_service=False)
    assert figures["events"] > 40 * 5 and figures["rebuild_events"] == figures["events"]
    assert figures["rebuild_events_per_second"] > 0 and figures["rebuild_peak_rss_mb"] > 0
    assert figures["kpi_year_packages"] == 40
    assert set(figures["kpi_query_p95_s"]) == set(repo.KPI_QUERIES)
    for name, p95 in figures["kpi_query_p95_s"].items():
        assert 0 < figures["kpi_query_p50_s"][name] <= p95
    assert 0 < figures["kpi_report_p50_s"] <= figures["kpi_report_p95_s"]
    server = await asyncpg.connect(infra.database_url("postgres"))
    try:
        assert not await server.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'homecare_bench_reporting_%'"
        )
    finally:
        await server.close()
