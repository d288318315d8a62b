"""Running the three services as separate OS processes, for the end-to-end and fault tests."""

from __future__ import annotations

import json

import asyncpg

from services.cli.processes import ROOT, SERVICES, Stack, free_port, start_stack, stop_stack  # noqa: F401  (shared with the benchmark)


def event_of(record) -> dict | None:
    """The event in a Kafka record, or None for the garbage other tests put on the topics."""
    try:
        event = json.loads(record.value)
    except (ValueError, TypeError):
        return None
    return event if isinstance(event, dict) and "event_type" in event else None


async def drop_database(infra, name: str) -> None:
    admin = await asyncpg.connect(infra.database_url("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
