"""Pauses and endings end to end (decision record 0078): the three services as processes on the
real Kafka and PostgreSQL. A hospital pause and its resume, a pause whose hold runs out into an
ending, a death releasing the provider's hours, and bad input refused with the field named and
nothing written. Each party (the provider, the requesting broker, the family) is told exactly once.

The stack's hold is 20 seconds (tests/e2e/conftest.py: BROKERAGE_PAUSE_HOLD_SECONDS)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import Counter

import asyncpg
import httpx
import pytest

from services.bench.driver import wait_until_ready
from services.runtime import clock
from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests.support import staff

ZONES = ("melton", "charnwood-north", "coalville-ashby", "hinckley")


@pytest.fixture(scope="module")
async def ready(stack):
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_until_ready(
            client, {n: stack.url(n) for n in ("brokerage", "providers", "notifications")}, timeout=90
        )
    return stack


async def query(database_url: str, sql: str, *args):
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def make_room(stack, hours: int = 40) -> None:
    """Free hours for every active provider of :data:`ZONES`: the session's earlier end-to-end tests
    place packages on the same seeded market and may have used its capacity up."""
    from tests.e2e.test_package_changes import room_for  # (it imports this module)

    async with httpx.AsyncClient(base_url=stack.url("providers"), auth=staff(), timeout=10) as providers:
        registry = (await providers.get("/providers")).json()
    for provider in registry:
        if provider.get("status") == "active" and set(provider.get("zones") or ()) & set(ZONES):
            await room_for(stack, provider["provider_id"], hours)


async def running_package(stack, seed: int) -> dict:
    """A package requested, placed and started today (tried zone by zone until one places), with its
    provider, broker and family registered to be told by email."""
    framework = load_framework()
    await make_room(stack)
    async with httpx.AsyncClient(base_url=stack.url("brokerage"), auth=staff(), timeout=10) as api:
        for attempt, zone in enumerate(ZONES * 2):
            body = package_request(random.Random(seed * 100 + attempt), framework, zone, index=seed)
            body["start_date"] = clock.uk_today().isoformat()
            created = await api.post("/packages", json=body)
            assert created.status_code == 201, created.text
            package_id = created.json()["package_id"]
            for _ in range(120):
                view = (await api.get(f"/packages/{package_id}")).json()
                if view["status"] in ("placed", "unplaced", "awaiting_approval"):
                    break
                await asyncio.sleep(0.25)
            if view["status"] == "placed":
                break
        else:
            pytest.fail("no package could be placed in any of the zones tried")
        started = await api.post(f"/packages/{package_id}/start", json={"started_on": clock.uk_today().isoformat()})
        assert started.status_code == 200, started.text
    async with httpx.AsyncClient(base_url=stack.url("notifications"), auth=staff("demo-admin"), timeout=10) as admin:
        for kind, recipient in (
            ("provider", view["provider_id"]),
            ("broker", view["requested_by"]),
            ("person", package_id),
        ):
            contact = {"email": f"{kind}-{recipient}@pauses.example.org", "channels": ["email"]}
            (await admin.put(f"/recipients/{kind}/{recipient}", json=contact)).raise_for_status()
    return view


async def wait_for(check, timeout: float = 60.0, every: float = 0.5):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(every)


async def told(database_url: str, package_id: str, event_type: str, want: int = 3) -> Counter:
    """Who was sent what for one event type of the package, once all ``want`` deliveries are sent."""

    async def sent():
        rows = await query(
            database_url,
            "SELECT recipient_role, recipient_id, message, status FROM notifications.deliveries "
            "WHERE package_id::text = $1 AND event_type = $2",
            package_id,
            event_type,
        )
        return rows if len(rows) >= want and all(r["status"] == "sent" for r in rows) else None

    rows = await wait_for(sent) or []
    return Counter((r["recipient_role"], r["recipient_id"], r["message"]) for r in rows)


def everyone(view: dict, name: str) -> Counter:
    return Counter(
        {
            ("provider", view["provider_id"], f"{name}_provider"): 1,
            ("broker", view["requested_by"], f"{name}_broker"): 1,
            ("person", view["package_id"], f"{name}_person"): 1,
        }
    )


async def placement(database_url: str, package_id: str):
    rows = await query(
        database_url,
        "SELECT * FROM providers.placements WHERE package_id::text = $1 ORDER BY offer_round DESC LIMIT 1",
        package_id,
    )
    return rows[0] if rows else None


async def committed(database_url: str, provider_id: str):
    [row] = await query(
        database_url, "SELECT committed_hours FROM providers.providers WHERE provider_id = $1", provider_id
    )
    return row["committed_hours"]


async def test_a_hospital_pause_keeps_the_provider_and_its_hours_and_a_resume_restarts_the_visits(
    ready, database_url, mail_server
):
    view = await running_package(ready, 1)
    package_id, provider_id = view["package_id"], view["provider_id"]
    hours_before = await committed(database_url, provider_id)
    today = clock.uk_today().isoformat()
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        paused = await api.post(
            f"/packages/{package_id}/pause", json={"reason": "admitted_to_hospital", "paused_on": today}
        )
        assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
        # While paused it is not handed back or started again.
        refused = await api.post(
            f"/packages/{package_id}/hand-back", json={"notice_ends_on": today, "reason": "staff_shortage"}
        )
        assert refused.status_code == 409, refused.text
        assert (await wait_for(lambda: _paused_on_placement(database_url, package_id)))["pause_reason"] == (
            "admitted_to_hospital"
        )
        assert await committed(database_url, provider_id) == hours_before, "the provider keeps the hours"
        resumed = await api.post(f"/packages/{package_id}/resume", json={"resumed_on": today})
        assert resumed.status_code == 200 and resumed.json()["status"] == "started", resumed.text
        view_after = (await api.get(f"/packages/{package_id}")).json()
    assert view_after["provider_id"] == provider_id and view_after["hold_expires_at"] is None
    assert [t["stage"] for t in view_after["timeline"]][-2:] == ["paused", "resumed"]
    assert await told(database_url, package_id, "PackagePaused") == everyone(view, "paused")
    assert await told(database_url, package_id, "PackageResumed") == everyone(view, "resumed")
    cleared = await wait_for(lambda: _running_placement(database_url, package_id))
    assert cleared and cleared["pauses"] == 1 and cleared["ended_at"] is None
    await asyncio.sleep(25)  # past the hold: a resumed package is not ended by the timer
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        assert (await api.get(f"/packages/{package_id}")).json()["status"] == "started"
    assert await committed(database_url, provider_id) == hours_before
    # What reached the SMTP server: each of these six deliveries exactly once.
    deliveries = await query(
        database_url,
        "SELECT delivery_id::text AS d FROM notifications.deliveries WHERE package_id::text = $1 "
        "AND event_type IN ('PackagePaused', 'PackageResumed')",
        package_id,
    )
    arrived = Counter(m["Message-ID"] for m in mail_server.received)
    assert len(deliveries) == 6 and all(arrived[f"<{r['d']}@homecare-brokerage>"] == 1 for r in deliveries)


async def _paused_on_placement(database_url, package_id):
    row = await placement(database_url, package_id)
    return row if row is not None and row["paused_on"] is not None else None


async def _running_placement(database_url, package_id):
    row = await placement(database_url, package_id)
    return row if row is not None and row["paused_on"] is None and row["pauses"] else None


async def test_a_pause_that_outlasts_the_hold_ends_the_package_and_releases_the_hours_once(ready, database_url):
    view = await running_package(ready, 2)
    package_id, provider_id = view["package_id"], view["provider_id"]
    hours_before = await committed(database_url, provider_id)
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        paused = await api.post(
            f"/packages/{package_id}/pause",
            json={"reason": "admitted_to_hospital", "paused_on": clock.uk_today().isoformat()},
        )
        assert paused.status_code == 200, paused.text

        async def ended():
            body = (await api.get(f"/packages/{package_id}")).json()
            return body if body["status"] == "ended" else None

        final = await wait_for(ended, timeout=90)
    assert final, "the hold ran out but the package did not end"
    assert final["end_reason"] == "hospital_stay_exceeded_hold" and final["provider_id"] == provider_id
    assert await told(database_url, package_id, "PackageEnded") == everyone(view, "ended")
    ends = await query(
        database_url,
        "SELECT count(*) AS n FROM brokerage.outbox WHERE aggregateid = $1 AND type = 'PackageEnded'",
        package_id,
    )
    assert ends[0]["n"] == 1, "ended once"
    row = await wait_for(lambda: _ended_placement(database_url, package_id))
    assert row and row["end_reason"] == "ended"
    assert await committed(database_url, provider_id) == hours_before - row["hours_per_week"]


async def _ended_placement(database_url, package_id):
    row = await placement(database_url, package_id)
    return row if row is not None and row["ended_at"] is not None else None


async def test_a_death_ends_the_package_today_and_frees_the_providers_hours(ready, database_url):
    view = await running_package(ready, 3)
    package_id, provider_id = view["package_id"], view["provider_id"]
    hours_before = await committed(database_url, provider_id)
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        response = await api.post(
            f"/packages/{package_id}/end",
            json={"reason": "died", "effective_date": clock.uk_today().isoformat(), "reason_text": "at home"},
        )
        assert response.status_code == 200 and response.json()["status"] == "ended", response.text
    row = await wait_for(lambda: _ended_placement(database_url, package_id))
    assert row and row["end_reason"] == "ended"
    assert await committed(database_url, provider_id) == hours_before - row["hours_per_week"]
    assert await told(database_url, package_id, "PackageEnded") == everyone(view, "ended")
    # The broker's words stay in the brokerage: not on the event.
    payloads = await query(
        database_url, "SELECT payload::text AS p FROM brokerage.outbox WHERE aggregateid = $1", package_id
    )
    assert all("at home" not in r["p"] for r in payloads)


async def test_bad_endings_pauses_and_resumes_are_refused_naming_the_field_and_write_nothing(ready, database_url):
    view = await running_package(ready, 4)
    package_id = view["package_id"]
    today = clock.uk_today()

    async def written():
        rows = await query(
            database_url,
            "SELECT (SELECT row_to_json(p)::text FROM brokerage.packages p WHERE package_id::text = $1) AS package, "
            "(SELECT count(*) FROM brokerage.timeline WHERE package_id::text = $1) AS stages, "
            "(SELECT count(*) FROM brokerage.outbox WHERE aggregateid = $1) AS events",
            package_id,
        )
        return dict(rows[0])

    # Each refusal's problem code: what a program (the console) branches on (docs/guide/problems.md).
    cases = [
        (
            "end",
            {"reason": "died", "effective_date": str(today - dt.timedelta(days=1))},
            422,
            "effective_date",
            "date-before-start",
        ),
        (
            "end",
            {"reason": "died", "effective_date": str(today + dt.timedelta(days=400))},
            422,
            "effective_date",
            "date-too-far-ahead",
        ),
        ("end", {"reason": "lost_interest", "effective_date": str(today)}, 422, "reason", "invalid-request"),
        ("end", {"reason": "died"}, 422, "effective_date", "invalid-request"),
        (
            "pause",
            {"reason": "admitted_to_hospital", "paused_on": str(today + dt.timedelta(days=2))},
            422,
            "paused_on",
            "date-in-future",
        ),
        ("pause", {"reason": "holiday", "paused_on": str(today)}, 422, "reason", "invalid-request"),
        ("resume", {"resumed_on": str(today)}, 409, "status", "action-not-allowed"),
    ]
    before = await written()
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        for action, body, status, field, code in cases:
            response = await api.post(f"/packages/{package_id}/{action}", json=body)
            assert response.status_code == status, (action, body, response.text)
            assert field in [f["field"] for f in response.json()["fields"]], (action, body, response.json())
            assert response.json()["code"] == code, (action, body, response.json())
        # Unknown package: 404.
        missing = await api.post(
            "/packages/00000000-0000-4000-8000-000000000000/end",
            json={"reason": "died", "effective_date": str(today)},
        )
        assert missing.status_code == 404
    assert await written() == before, "a refused request wrote nothing"
