"""Changes to a running package end to end (decision record 0082): the three services as processes on
the real Kafka and PostgreSQL. An increase accepted by the provider's automatic adapter (the package
and the provider's committed hours change), a reduction declined through the provider API (the
package re-brokered with the new pattern while the provider carries on, then handed over to the new
provider), and bad input refused with the field named and nothing written. Each party is told
exactly once."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import httpx
import pytest

from services.bench.driver import wait_until_ready
from services.runtime import clock
from tests.e2e.test_pauses_and_endings import committed, query, running_package, told, wait_for
from tests.support import staff


@pytest.fixture(scope="module")
async def ready(stack):
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_until_ready(
            client, {n: stack.url(n) for n in ("brokerage", "providers", "notifications")}, timeout=90
        )
    return stack


async def room_for(stack, provider_id: str, hours: int = 40) -> dict[str, str]:
    """A credential for the provider, which raises its own capacity through the provider API (earlier
    tests may have used up the seeded market's free hours); returns its Authorization header."""
    async with httpx.AsyncClient(base_url=stack.url("providers"), timeout=10) as providers:
        issued = await providers.post(f"/providers/{provider_id}/credentials", auth=staff("demo-admin"), json={})
        assert issued.status_code == 201, issued.status_code
        me = {"Authorization": f"Bearer {issued.json()['token']}"}
        mine = (await providers.get("/me", headers=me)).json()
        capacity = Decimal(mine["committed_hours"]) + Decimal(mine["held_hours"]) + hours
        raised = await providers.patch("/me", headers=me, json={"weekly_capacity_hours": str(capacity)})
        assert raised.status_code == 200, raised.text
    return me


@contextlib.asynccontextmanager
async def adapter_while(
    stack, database_url: str, provider_id: str, adapter: Callable[[dict], dict]
) -> AsyncIterator[httpx.AsyncClient]:
    """The provider's adapter replaced by ``adapter(current rules)`` (as the council's administrator)
    for the block and put back after it (the seeded market is shared by the module's tests); yields a
    client of the providers service."""
    [row] = await query(
        database_url, "SELECT adapter::text AS a FROM providers.providers WHERE provider_id = $1", provider_id
    )
    current = json.loads(row["a"])
    admin = staff("demo-admin")
    async with httpx.AsyncClient(base_url=stack.url("providers"), timeout=10) as providers:
        changed = await providers.put(f"/providers/{provider_id}/adapter", auth=admin, json=adapter(current))
        assert changed.status_code == 200, changed.text
        try:
            yield providers
        finally:
            restored = await providers.put(f"/providers/{provider_id}/adapter", auth=admin, json=current)
            assert restored.status_code == 200, restored.text


def hours_of(visits: dict) -> Decimal:
    minutes = visits["calls_per_day"] * visits["minutes_per_call"] * visits["carers_per_call"] * visits["days_per_week"]
    return (Decimal(minutes) / 60).quantize(Decimal("0.01"))


def change_body(view: dict, minutes_delta: int, **extra) -> dict:
    visits = dict(view["package"]["visits"])
    if minutes_delta < 0 and visits["minutes_per_call"] + minutes_delta < 15:
        # As short as calls go: fewer calls a day, or fewer days, instead.
        key = "calls_per_day" if visits["calls_per_day"] > 1 else "days_per_week"
        visits[key] -= 1
    else:
        visits["minutes_per_call"] = visits["minutes_per_call"] + minutes_delta
    return {
        "hours_per_week": str(hours_of(visits)),
        "visits": visits,
        "reason": "needs_increased_after_fall" if minutes_delta > 0 else "reablement_progress",
        "effective_date": clock.uk_today().isoformat(),
    } | extra


async def test_an_increase_accepted_by_an_automatic_adapter_changes_the_package_and_the_hours(
    ready, database_url, mail_server
):
    view = await running_package(ready, 21)
    package_id, provider_id = view["package_id"], view["provider_id"]
    await room_for(ready, provider_id)
    before = await committed(database_url, provider_id)
    body = change_body(view, 15)
    # The seeded adapters take packages up to 20-42 hours a week: the council lets this one take more.
    async with (
        adapter_while(ready, database_url, provider_id, lambda rules: rules | {"max_package_hours": "80"}),
        httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api,
    ):
        asked = await api.post(f"/packages/{package_id}/changes", json=body)
        assert asked.status_code == 202, asked.text
        assert asked.json()["change_status"] == "pending"

        async def changed():
            current = (await api.get(f"/packages/{package_id}")).json()
            return current if current["changes"] and current["changes"][-1]["status"] != "pending" else None

        after = await wait_for(changed)
    assert after and after["changes"][-1]["status"] == "accepted", after and after["changes"]
    assert after["status"] == "started" and after["provider_id"] == provider_id
    assert Decimal(after["package"]["hours_per_week"]) == Decimal(body["hours_per_week"])
    assert after["changes"][-1]["changed_by"] == "demo-broker"  # the token's user, never the body
    extra = Decimal(body["hours_per_week"]) - Decimal(view["package"]["hours_per_week"])

    async def moved():
        return await committed(database_url, provider_id) == before + extra

    assert await wait_for(moved), "the provider's committed hours moved by the difference"
    rows = await query(
        database_url,
        "SELECT hours_per_week FROM providers.placements WHERE package_id::text = $1 AND ended_at IS NULL",
        package_id,
    )
    assert [r["hours_per_week"] for r in rows] == [Decimal(body["hours_per_week"])]
    assert await told(database_url, package_id, "ChangeOffered", want=1) == Counter(
        {("provider", provider_id, "change_offered_provider"): 1}
    )
    assert await told(database_url, package_id, "PackageChanged") == Counter(
        {
            ("provider", provider_id, "changed_provider"): 1,
            ("broker", view["requested_by"], "changed_broker"): 1,
            ("person", package_id, "changed_person"): 1,
        }
    )
    # What reached the SMTP server: each of these four deliveries exactly once.
    deliveries = await query(
        database_url,
        "SELECT delivery_id::text AS d FROM notifications.deliveries WHERE package_id::text = $1 "
        "AND event_type IN ('ChangeOffered', 'PackageChanged')",
        package_id,
    )
    arrived = Counter(m["Message-ID"] for m in mail_server.received)
    assert len(deliveries) == 4 and all(arrived[f"<{r['d']}@homecare-brokerage>"] == 1 for r in deliveries)


async def test_a_reduction_declined_is_rebrokered_while_the_provider_carries_on_then_handed_over(ready, database_url):
    view = await running_package(ready, 22)
    package_id, provider_id = view["package_id"], view["provider_id"]
    before = await committed(database_url, provider_id)
    old_hours = Decimal(view["package"]["hours_per_week"])
    me = await room_for(ready, provider_id)
    async with adapter_while(ready, database_url, provider_id, lambda rules: {"kind": "portal"}) as providers:
        body = change_body(view, -15, discussed_with_person=True)
        async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
            asked = await api.post(f"/packages/{package_id}/changes", json=body)
            assert asked.status_code == 202, asked.text
            change_id = asked.json()["change_id"]

            async def offered():
                mine = (await providers.get("/me/package-changes", headers=me)).json()
                return [c for c in mine if c["change_id"] == change_id]

            [offer] = await wait_for(offered)
            assert Decimal(offer["hours_per_week"]) == Decimal(body["hours_per_week"])
            declined = await providers.post(offer["answer_with"]["decline"], headers=me, json={"reason": "call_times"})
            assert declined.status_code == 200, declined.text
            again = await providers.post(offer["answer_with"]["accept"], headers=me)
            assert again.status_code == 409, again.text

            async def rebrokered():
                current = (await api.get(f"/packages/{package_id}")).json()
                return current if current["status"] in ("placed", "unplaced", "awaiting_approval") else None

            after = await wait_for(rebrokered, timeout=90)
    assert after and after["status"] == "placed", after and after["status"]
    assert after["provider_id"] != provider_id and after["carried_on_by"] is None
    assert after["changes"][-1]["status"] == "declined" and after["changes"][-1]["decline_reason"] == "call_times"
    assert Decimal(after["package"]["hours_per_week"]) == Decimal(body["hours_per_week"])
    stages = [t["stage"] for t in after["timeline"]]
    assert (
        stages.index("change declined")
        < stages.index("offered", stages.index("change declined"))
        < stages.index("handed over")
    )
    new_provider = after["provider_id"]

    async def handed_over():
        return await committed(database_url, provider_id) == before - old_hours

    assert await wait_for(handed_over), "the provider that carried on gave its hours back at the hand-over"
    live = await query(
        database_url,
        "SELECT provider_id, hours_per_week FROM providers.placements WHERE package_id::text = $1 AND ended_at IS NULL",
        package_id,
    )
    assert [(r["provider_id"], r["hours_per_week"]) for r in live] == [(new_provider, Decimal(body["hours_per_week"]))]
    assert await told(database_url, package_id, "ChangeOffered", want=1) == Counter(
        {("provider", provider_id, "change_offered_provider"): 1}
    )
    assert await told(database_url, package_id, "ChangeDeclined", want=2) == Counter(
        {
            ("provider", provider_id, "change_declined_provider"): 1,
            ("broker", view["requested_by"], "change_declined_broker"): 1,
        }
    )
    assert await told(database_url, package_id, "PackageHandedOver", want=1) == Counter(
        {("provider", provider_id, "handed_over_provider"): 1}
    )


async def test_bad_changes_are_refused_naming_the_field_and_write_nothing(ready, database_url):
    view = await running_package(ready, 23)
    package_id = view["package_id"]

    async def written():
        rows = await query(
            database_url,
            "SELECT (SELECT row_to_json(p)::text FROM brokerage.packages p WHERE package_id::text = $1) AS package, "
            "(SELECT count(*) FROM brokerage.timeline WHERE package_id::text = $1) AS stages, "
            "(SELECT count(*) FROM brokerage.package_changes WHERE package_id::text = $1) AS changes, "
            "(SELECT count(*) FROM brokerage.outbox WHERE aggregateid = $1) AS events",
            package_id,
        )
        return dict(rows[0])

    more = change_body(view, 15)
    cases = [
        (change_body(view, -15), 422, "discussed_with_person", "reduction-not-discussed"),
        (change_body(view, -15, discussed_with_person=False), 422, "discussed_with_person", "reduction-not-discussed"),
        (more | {"hours_per_week": str(Decimal(more["hours_per_week"]) + 20)}, 422, "hours_per_week", "hours-mismatch"),
        (change_body(view, 0), 422, "visits", "change-changes-nothing"),
        (more | {"reason": "felt_like_it"}, 422, "reason", "invalid-request"),
        (more | {"changed_by": "someone.else"}, 422, "changed_by", "invalid-request"),
    ]
    before = await written()
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        for body, status, field, code in cases:
            response = await api.post(f"/packages/{package_id}/changes", json=body)
            assert response.status_code == status, (body, response.text)
            assert field in [f["field"] for f in response.json()["fields"]], (body, response.json())
            assert response.json()["code"] == code, (body, response.json())
        assert await written() == before, "a refused request wrote nothing"
        # Not running: a paused package is not changed (409 naming the status).
        paused = await api.post(
            f"/packages/{package_id}/pause",
            json={"reason": "admitted_to_hospital", "paused_on": clock.uk_today().isoformat()},
        )
        assert paused.status_code == 200, paused.text
        before = await written()
        refused = await api.post(f"/packages/{package_id}/changes", json=more)
        assert refused.status_code == 409 and refused.json()["fields"][0]["field"] == "status", refused.text
        assert await written() == before
        resumed = await api.post(f"/packages/{package_id}/resume", json={"resumed_on": clock.uk_today().isoformat()})
        assert resumed.status_code == 200, resumed.text
        missing = await api.post("/packages/00000000-0000-4000-8000-000000000000/changes", json=more)
        assert missing.status_code == 404


async def test_a_change_withdrawn_by_a_pause_is_closed_for_the_provider_and_told_once(ready, database_url):
    """Found by an attack: after a pause withdrew a change, the provider's portal still listed it as
    offered and "accepting" it was taken (200), and nobody told the provider. ChangeWithdrawn closes
    it in the providers service and tells the provider, once; the hours stay."""
    view = await running_package(ready, 23)
    package_id, provider_id = view["package_id"], view["provider_id"]
    me = await room_for(ready, provider_id)
    before = await committed(database_url, provider_id)
    async with (
        adapter_while(ready, database_url, provider_id, lambda rules: {"kind": "portal"}) as providers,
        httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api,
    ):
        asked = await api.post(f"/packages/{package_id}/changes", json=change_body(view, 15))
        assert asked.status_code == 202, asked.text
        change_id = asked.json()["change_id"]

        async def listed():
            mine = (await providers.get("/me/package-changes", headers=me)).json()
            return [c for c in mine if c["change_id"] == change_id and c["status"] == "offered"]

        [offer] = await wait_for(listed)
        paused = await api.post(
            f"/packages/{package_id}/pause",
            json={"reason": "admitted_to_hospital", "paused_on": clock.uk_today().isoformat()},
        )
        assert paused.status_code == 200, paused.text

        async def closed():
            return not await listed()

        assert await wait_for(closed), "the withdrawn change is no longer open to the provider"
        late = await providers.post(offer["answer_with"]["accept"], headers=me)
        assert late.status_code == 409, late.text
    assert await told(database_url, package_id, "ChangeWithdrawn", want=1) == Counter(
        {("provider", provider_id, "change_withdrawn_provider"): 1}
    )
    assert await committed(database_url, provider_id) == before, "the hours stay as they were"
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        current = (await api.get(f"/packages/{package_id}")).json()
    assert current["status"] == "paused" and current["changes"][-1]["status"] == "withdrawn"
    assert Decimal(current["package"]["hours_per_week"]) == Decimal(view["package"]["hours_per_week"])
