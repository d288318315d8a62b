"""A provider's row is updated by every bid and award (its held and committed hours): each new
version stays on the row's page - an update PostgreSQL calls HOT, which adds no index entry - even
while a transaction that may still see the old versions is open (decision 0144)."""

from __future__ import annotations

from services.providers.app import build
from tests.handlers.test_providers_handlers import willing


async def test_a_providers_row_keeps_its_page_through_a_run_of_updates_under_an_open_snapshot(in_memory):
    service, _ = await in_memory(build, "providers")
    [pid] = await willing(service)
    async with service.pool.acquire() as reader, reader.transaction(isolation="repeatable_read"):
        # An older snapshot, as a long batch transaction elsewhere holds: no version after it can be
        # pruned away to make room.
        await reader.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", pid)
        pages = set()
        for _ in range(8):  # eight bids' holds in a row
            await service.pool.execute("UPDATE providers SET held_hours = held_hours + 1 WHERE provider_id = $1", pid)
            ctid = await service.pool.fetchval("SELECT ctid::text FROM providers WHERE provider_id = $1", pid)
            pages.add(ctid.strip("()").split(",")[0])
        await service.pool.execute("UPDATE providers SET held_hours = held_hours - 8 WHERE provider_id = $1", pid)
    assert len(pages) == 1, f"the row's versions moved between pages {sorted(pages)}"
