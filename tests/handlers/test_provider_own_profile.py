"""A provider changes its own profile (``PATCH /me``): only what is sent changes; call times and
calls a day sent as null go back to their defaults (found by an attack: the call times, once set,
could never go back to "any", though the portal's form says to leave every slot unticked for it)."""

from __future__ import annotations

from tests.handlers.test_provider_answers_idempotent import client, portal_market


async def test_call_times_and_calls_a_day_sent_as_null_go_back_to_their_defaults(in_memory):
    service, _, tokens = await portal_market(in_memory, 1)
    [(_, token)] = tokens.items()
    async with client(service, token) as c:
        before = (await c.get("/me")).json()
        narrowed = await c.patch("/me", json={"call_times": ["morning"], "max_calls_per_day": 2})
        assert narrowed.status_code == 200, narrowed.text
        assert narrowed.json()["adapter"]["call_times"] == ["morning"]
        assert narrowed.json()["adapter"]["max_calls_per_day"] == 1  # no more than the slots it covers
        assert narrowed.json()["adapter"]["max_calls_per_day_setting"] == 2  # its own limit, as set
        # Not sent: kept. The capacity alone changes.
        capacity = await c.patch("/me", json={"weekly_capacity_hours": before["weekly_capacity_hours"]})
        assert capacity.json()["adapter"]["call_times"] == ["morning"]
        back = await c.patch("/me", json={"call_times": None, "max_calls_per_day": None})
        assert back.status_code == 200, back.text
        assert back.json()["adapter"]["call_times"] is None  # any call time
        assert back.json()["adapter"]["max_calls_per_day"] == 4  # the default
        # The capacity has no default: null is refused, naming it, and nothing changes.
        refused = await c.patch("/me", json={"weekly_capacity_hours": None, "call_times": ["evening"]})
        assert refused.status_code == 422
        assert refused.json()["fields"][0]["field"] == "weekly_capacity_hours"
        assert (await c.get("/me")).json()["adapter"]["call_times"] is None
        # At least one call slot: none at all covered no call and declined every offer.
        empty = await c.patch("/me", json={"call_times": []})
        assert empty.status_code == 422 and empty.json()["fields"][0]["field"] == "call_times"


async def test_an_unchanged_capacity_makes_no_new_revision_and_no_event(in_memory):
    """The portal's form always sends the capacity: a save that changes nothing told the brokerage
    of a new revision each time (found by an attack)."""
    service, _, tokens = await portal_market(in_memory, 1)
    [(pid, token)] = tokens.items()
    revision = "SELECT revision FROM providers WHERE provider_id = $1"
    events = "SELECT count(*) FROM outbox WHERE aggregateid = $1 AND type = 'ProviderUpdated'"
    async with client(service, token) as c:
        capacity = (await c.get("/me")).json()["weekly_capacity_hours"]
        before = (await service.pool.fetchval(revision, pid), await service.pool.fetchval(events, pid))
        assert (await c.patch("/me", json={"weekly_capacity_hours": capacity})).status_code == 200
        assert (await service.pool.fetchval(revision, pid), await service.pool.fetchval(events, pid)) == before
        raised = await c.patch("/me", json={"weekly_capacity_hours": str(float(capacity) + 1)})
        assert raised.status_code == 200
        assert await service.pool.fetchval(events, pid) == before[1] + 1
