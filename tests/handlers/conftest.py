"""Handler tests: the real service wiring and a real PostgreSQL, with FastStream's in-memory
TestKafkaBroker standing in for Kafka (the same handlers run against the real broker in
tests/integration and tests/e2e)."""

import pytest
from faststream.kafka import TestKafkaBroker

from services.runtime.db import create_pool, migrate
from services.runtime.settings import load


@pytest.fixture
async def in_memory(database_url):
    """Build a service in-process on the in-memory broker: yields (service, broker)."""
    started = []

    async def start(build, name, *, run_startup=True, before_start=None):
        settings = load(name, consumer_backoff_initial_seconds=0.01, consumer_max_attempts=2)
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
