"""Handler tests: the real service wiring and a real PostgreSQL, with FastStream's in-memory
TestKafkaBroker standing in for Kafka (the same handlers run against the real broker in
tests/integration and tests/e2e)."""

from urllib.parse import urlsplit

import asyncpg
import pytest
from faststream.kafka import TestKafkaBroker

from services.runtime.db import create_pool, migrate, provision
from services.runtime.settings import load


@pytest.fixture(scope="package")
async def handlers_database(infra, database_url):
    """A database of the handler tests' own: they arrange markets (retire providers, top up
    capacity) that must not leak into the end-to-end tests' services."""
    url = infra.database_url(urlsplit(database_url).path.lstrip("/") + "_handlers")
    await provision(url)
    yield url
    admin = await asyncpg.connect(infra.database_url("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def in_memory(handlers_database):
    """Build a service in-process on the in-memory broker: yields (service, broker)."""
    started = []

    async def start(build, name, *, run_startup=True, before_start=None):
        settings = load(name, database_url=handlers_database, consumer_backoff_initial_seconds=0.01, consumer_max_attempts=2)
        service, _app = build(settings)
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
