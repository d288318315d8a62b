"""Hand-backs in the last 12 months from the register's dated record (decision 0119), in the providers
service on PostgreSQL: a hand-back dated 366 days ago does not count, one dated 364 days ago does; the
profile the brokerage ranks with carries the dated record, the register shows the same count; a
profile without dates (seeded, or written before the dates travelled) is dated once at start-up from
the seed file's dated hand-backs."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import httpx

from schemas.events import PackageHandedBack, ProviderProfile
from services.brokerage import domain as brokerage
from services.providers import handlers
from services.providers.app import build
from services.runtime import clock
from services.runtime.outbox import unit_of_work
from tests import local_issuer
from tests.handlers.test_providers_handlers import placed_package


async def dated(service, pid: str) -> list[str]:
    """The profile's dated hand-backs as stored (what ProviderUpdated carries)."""
    return json.loads(
        await service.pool.fetchval("SELECT profile->'hand_back_dates' FROM providers WHERE provider_id = $1", pid)
    )


async def test_a_hand_back_366_days_old_does_not_count_and_one_364_days_old_does(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    today = clock.uk_date(handlers.now())
    old, recent = today - dt.timedelta(days=366), today - dt.timedelta(days=364)
    await service.pool.execute("DELETE FROM delivery_incidents WHERE provider_id = $1 AND kind = 'hand_back'", pid)
    for on in (old, recent):
        await service.pool.execute(
            "INSERT INTO delivery_incidents (provider_id, package_id, kind, on_date) VALUES ($1, $2, 'hand_back', $3)",
            pid,
            uuid.uuid4(),
            on,
        )
    handed = PackageHandedBack(
        correlation_id=event.package_id,
        package_id=event.package_id,
        provider_id=pid,
        notice_ends_on=today + dt.timedelta(days=7),
        reason="staff_shortage",
        hours_per_week=Decimal("7"),
        recorded_by="broker.amy",
        recorded_at=clock.now(),
    )
    for _ in range(2):  # a redelivery records nothing more
        await broker.publish(handed.model_dump_json().encode(), topic=topic)

    expected = [recent.isoformat(), today.isoformat()]
    assert await dated(service, pid) == expected, "the 366-day-old hand-back is not in the 12 months"
    update = json.loads(
        await service.pool.fetchval(
            "SELECT payload FROM outbox WHERE type = 'ProviderUpdated' AND aggregateid = $1 ORDER BY seq DESC LIMIT 1",
            pid,
        )
    )
    assert update["schema_version"] == 3
    profile = ProviderProfile.model_validate(update["profile"])
    assert profile.hand_backs_12m == 2 and [d.isoformat() for d in profile.hand_back_dates or []] == expected
    # The brokerage counts as of each offer's day: the 364-day-old one ages out two days later.
    assert brokerage.quality_inputs(profile, as_of=today).hand_backs_12m == 2
    assert brokerage.quality_inputs(profile, as_of=today + dt.timedelta(days=2)).hand_backs_12m == 1
    quality_event = json.loads(
        await service.pool.fetchval(
            "SELECT payload FROM outbox WHERE type = 'ProviderQualityRecorded' AND payload->>'provider_id' = $1 "
            "ORDER BY seq DESC LIMIT 1",
            pid,
        )
    )
    assert quality_event["change"] == "hand_back" and quality_event["quality_register"]["hand_backs_12m"] == 2
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://service",
        headers=local_issuer.headers(service.name, "demo-quality", ("contracts_quality",)),
    ) as api:
        register = (await api.get(f"/providers/{pid}/quality")).json()
    assert register["hand_backs_12m"] == 2 and register["score"]["hand_back_dates"] == expected
    assert register["score_explained"][2].startswith(f"2 hand-back(s) in the 12 months to {today.isoformat()}")
    assert sorted(i["on_date"] for i in register["incidents"] if i["kind"] == "hand_back")[0] == old.isoformat()


async def test_an_undated_profile_is_dated_once_from_the_seed_files_hand_backs(in_memory):
    service, _broker = await in_memory(build, "providers")
    pid = await service.pool.fetchval("SELECT provider_id FROM providers ORDER BY provider_id LIMIT 1 OFFSET 3")
    today = clock.uk_date(handlers.now())
    seeded = [today - dt.timedelta(days=400), today - dt.timedelta(days=30), today - dt.timedelta(days=2)]
    await service.pool.execute("DELETE FROM delivery_incidents WHERE provider_id = $1", pid)
    # As written before decision 0119: a count and no dates.
    await service.pool.execute(
        """UPDATE providers SET profile = (profile - 'hand_back_dates') || '{"hand_backs_12m": 4}'
            WHERE provider_id = $1""",
        pid,
    )
    entries = [{"provider_id": pid, "hand_backs": [d.isoformat() for d in seeded]}]
    for _ in range(2):  # the next start-up finds the profile dated: nothing more
        async with unit_of_work(service.pool) as uow:
            await handlers.date_seeded_hand_backs(uow, entries)
    rows = await service.pool.fetch(
        "SELECT on_date, source, package_id FROM delivery_incidents WHERE provider_id = $1 ORDER BY on_date", pid
    )
    assert [(r["on_date"], r["source"], r["package_id"]) for r in rows] == [(d, "seed", None) for d in seeded]
    assert await dated(service, pid) == [d.isoformat() for d in seeded[1:]], "the 400-day-old one has aged out"
    count = await service.pool.fetchval(
        "SELECT (profile->>'hand_backs_12m')::int FROM providers WHERE provider_id = $1", pid
    )
    assert count == 2
