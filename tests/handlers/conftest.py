"""Handler tests: the real service wiring and a real PostgreSQL, with FastStream's in-memory
TestKafkaBroker standing in for Kafka (the same handlers run against the real broker in
tests/integration and tests/e2e)."""

import json
from urllib.parse import urlsplit

import asyncpg
import pytest
from faststream.kafka import TestKafkaBroker

from services.runtime.db import create_pool, migrate, provision
from services.runtime.reference import load_provider_seed
from services.runtime.settings import load
from tests import local_issuer
from tests.support import drop_database


@pytest.fixture(scope="package")
async def handlers_database(infra, database_url):
    """A database of the handler tests' own: they arrange markets (retire providers, top up
    capacity) that must not leak into the end-to-end tests' services."""
    name = urlsplit(database_url).path.lstrip("/") + "_handlers"
    url = infra.database_url(name)
    await provision(url)
    yield url
    await drop_database(infra, name)


@pytest.fixture
async def in_memory(handlers_database, monkeypatch):
    """Build a service in-process on the in-memory broker: yields (service, broker). Its API trusts
    the tests' own issuer (tests/local_issuer.py: ``local_issuer.headers(name)`` signs a call)."""
    started = []
    local_issuer.serve_keys(monkeypatch)

    async def start(build, name, *, run_startup=True, before_start=None):
        settings = load(
            name,
            database_url=handlers_database,
            consumer_backoff_initial_seconds=0.01,
            consumer_max_attempts=2,
            **local_issuer.settings(),
        )
        service, app = build(settings)
        service.http_app = app  # the service's HTTP API, for tests that call it in-process (httpx ASGITransport)
        if before_start:
            before_start(service)  # e.g. subscribe a test listener: must precede TestKafkaBroker
        broker_cm = TestKafkaBroker(service.broker)
        broker = await broker_cm.__aenter__()
        service._pool = await create_pool(settings.service_dsn, schema=name, application=f"test-{name}", size=4)
        await migrate(service._pool, name, service.migrations)
        if run_startup:
            for step in service.startup_steps:
                await step(service)
        started.append((service, broker_cm))
        return service, broker

    yield start
    for service, broker_cm in started:
        await broker_cm.__aexit__(None, None, None)
        await service._pool.close()


from tests.handlers.market import brokerage  # noqa: E402,F401 - the brokerage market fixture, for every handler test


@pytest.fixture(autouse=True)
async def seeded_adapters_after(request):
    """Every handler test that builds a service leaves the providers' adapters and signing secrets
    as it found them (as seeded, when the test made the table): tests put providers on portal and
    webhook adapters, and a later test - in whatever order they run - expects the automatic ones."""
    if "in_memory" not in request.fixturenames:
        yield
    else:
        database = request.getfixturevalue("handlers_database")
        query = "SELECT provider_id, adapter::text, webhook_secret FROM providers.providers"
        exists = "SELECT to_regclass('providers.providers') IS NOT NULL"
        conn = await asyncpg.connect(database)
        try:
            before = [tuple(r) for r in await conn.fetch(query)] if await conn.fetchval(exists) else []
        finally:
            await conn.close()
        yield
        conn = await asyncpg.connect(database)
        try:
            if await conn.fetchval(exists):
                if not before:
                    seed = load_provider_seed()
                    before = [
                        (p["provider_id"], json.dumps(p.get("adapter") or {"kind": "automatic"}), None) for p in seed
                    ]
                await conn.executemany(
                    "UPDATE providers.providers SET adapter = $2::jsonb, webhook_secret = $3 WHERE provider_id = $1",
                    before,
                )
        finally:
            await conn.close()
