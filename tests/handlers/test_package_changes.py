"""Changes to a running package (decision record 0082) on the brokerage's handlers and API, with a
real PostgreSQL: the change offered to the provider holding the package, accepted (the package
changes) or declined or let lapse (re-brokered with the new pattern while the provider carries on),
and bad input refused with the field named and nothing written."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import pytest

from schemas.events import ChangeAnswered, VisitPattern
from schemas.vocabulary import CancelReason, ChangeReason, DeclineReason, PauseReason
from services.brokerage import handlers
from services.runtime import clock, topics
from services.runtime.consumer import Rejected
from services.runtime.outbox import unit_of_work
from tests.handlers.market import answer, outbox_types, request, run_timer, status
from tests.handlers.test_pauses_and_endings import api, snapshot, started

# The market's package: 2 calls x 30 min x 1 carer x 7 days = 7 h/week.
MORE = VisitPattern(calls_per_day=3, minutes_per_call=30, carers_per_call=1)  # 10.5 h
FEWER = VisitPattern(calls_per_day=1, minutes_per_call=30, carers_per_call=1)  # 3.5 h


async def change(service, rules, package_id, visits, hours, *, discussed=None, reason=ChangeReason.review_outcome):
    async with unit_of_work(service.pool) as uow:
        return await handlers.request_change(
            uow,
            rules,
            package_id,
            hours_per_week=Decimal(hours),
            visits=visits,
            needs=None,
            reason=reason,
            effective_date=clock.uk_today(),
            discussed_with_person=discussed,
            changed_by="broker.bob",
        )


async def answer_change(broker, package_id, change_id, provider_id, *, decline: DeclineReason | None = None):
    event = ChangeAnswered(
        correlation_id=package_id,
        package_id=package_id,
        change_id=change_id,
        provider_id=provider_id,
        accepted=decline is None,
        reason=decline,
        adapter="automatic",
        answered_at=dt.datetime.now(dt.UTC),
    )
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.answers"))
    return event


def of_type(events, kind):
    return [p for t, p in events if t == kind]


async def test_an_increase_is_offered_to_the_provider_and_accepted_changes_the_package_once(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    change_id = await change(service, rules, package_id, MORE, "10.5", reason=ChangeReason.needs_increased_after_fall)
    offered = of_type(await outbox_types(service, package_id), "ChangeOffered")
    assert len(offered) == 1
    assert offered[0]["provider_id"] == ids["prime_best"] and offered[0]["change_id"] == str(change_id)
    assert Decimal(offered[0]["package"]["hours_per_week"]) == Decimal("10.5")
    assert Decimal(offered[0]["previous_hours_per_week"]) == 7
    assert offered[0]["reason"] == "needs_increased_after_fall" and offered[0]["requested_by"] == "broker.amy"
    row = await service.pool.fetchrow("SELECT * FROM package_changes WHERE change_id = $1", change_id)
    assert (row["status"], row["changed_by"], row["discussed_with_person"]) == ("pending", "broker.bob", False)
    event = await answer_change(broker, package_id, change_id, ids["prime_best"])
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.answers"))  # again
    changed = of_type(await outbox_types(service, package_id), "PackageChanged")
    assert len(changed) == 1, "a redelivered answer changes nothing"
    assert Decimal(changed[0]["hours_per_week"]) == Decimal("10.5")
    assert Decimal(changed[0]["previous_hours_per_week"]) == 7
    assert changed[0]["changed_by"] == "broker.bob" and changed[0]["provider_id"] == ids["prime_best"]
    package = await service.pool.fetchrow("SELECT * FROM packages WHERE package_id = $1", package_id)
    assert (package["status"], package["provider_id"], package["hours_per_week"]) == (
        "started",
        ids["prime_best"],
        Decimal("10.5"),
    )
    assert package["pending_change_id"] is None and package["change_window_closes_at"] is None
    stages = [
        r["stage"]
        for r in await service.pool.fetch("SELECT stage FROM timeline WHERE package_id = $1 ORDER BY id", package_id)
    ]
    assert stages[-2:] == ["change offered", "changed"]
    # A provider answering a change it was not offered is a faulty or forged adapter: a dead letter.
    with pytest.raises(Rejected):
        async with unit_of_work(service.pool) as uow:
            forged = event.model_copy(update={"provider_id": ids["supp"], "event_id": uuid.uuid4()})
            await handlers.record_change_answer(uow, rules, forged)


async def test_a_declined_reduction_is_rebrokered_while_the_provider_carries_on(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    change_id = await change(service, rules, package_id, FEWER, "3.5", discussed=True)
    await answer_change(broker, package_id, change_id, ids["prime_best"], decline=DeclineReason.call_times)
    events = await outbox_types(service, package_id)
    declined = of_type(events, "ChangeDeclined")
    assert len(declined) == 1 and declined[0]["outcome"] == "declined" and declined[0]["decline_reason"] == "call_times"
    assert not of_type(events, "PackageChanged")
    offers = of_type(events, "OfferMade")
    assert (
        Decimal(offers[-1]["package"]["hours_per_week"]) == Decimal("3.5")
        and ids["prime_best"] not in offers[-1]["provider_ids"]
    )
    package = await service.pool.fetchrow("SELECT * FROM packages WHERE package_id = $1", package_id)
    assert (package["status"], package["carried_on_by"], package["carried_hours"]) == (
        "offered",
        ids["prime_best"],
        Decimal("7"),
    )
    assert package["continuity"] and package["priority"]
    # A new provider's award replaces the old placement; nobody carries on any more.
    await answer(broker, package_id, ids["prime_good"], offer_round=offers[-1]["offer_round"], rate="20.00")
    package = await service.pool.fetchrow("SELECT * FROM packages WHERE package_id = $1", package_id)
    assert (package["status"], package["provider_id"], package["carried_on_by"]) == ("placed", ids["prime_good"], None)
    events = await outbox_types(service, package_id)
    placed = of_type(events, "PackagePlaced")
    assert Decimal(placed[-1]["hours_per_week"]) == Decimal("3.5")
    # The provider that carried on is told to stop when the new one starts, just before the award.
    kinds = [t for t, _ in events]
    assert kinds[-2:] == ["PackageHandedOver", "PackagePlaced"]
    [over] = of_type(events, "PackageHandedOver")
    assert (over["from_provider_id"], over["to_provider_id"]) == (ids["prime_best"], ids["prime_good"])
    assert Decimal(over["previous_hours_per_week"]) == 7 and over["handed_over_on"] == placed[-1]["start_date"]


async def test_a_change_left_unanswered_is_rebrokered_once_even_with_two_timers_racing(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    change_id = await change(service, rules, package_id, MORE, "10.5")
    async with unit_of_work(service.pool) as uow:
        assert await handlers.close_due_change_window(uow, rules) != package_id, "the window is open"
    await service.pool.execute(
        "UPDATE packages SET change_window_closes_at = now() - interval '1 second' WHERE package_id = $1", package_id
    )
    taken = await asyncio.gather(*(run_timer(service, rules, handlers.close_due_change_window) for _ in range(2)))
    assert sum(t.count(package_id) for t in taken) == 1
    declined = of_type(await outbox_types(service, package_id), "ChangeDeclined")
    assert len(declined) == 1 and declined[0]["outcome"] == "window_closed" and declined[0]["decline_reason"] is None
    assert await status(service, package_id) == "offered"
    # A late acceptance changes nothing.
    await answer_change(broker, package_id, change_id, ids["prime_best"])
    assert not of_type(await outbox_types(service, package_id), "PackageChanged")


async def test_a_pause_withdraws_a_pending_change(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    change_id = await change(service, rules, package_id, MORE, "10.5")
    async with unit_of_work(service.pool) as uow:
        await handlers.pause(
            uow, rules, package_id, reason=PauseReason.admitted_to_hospital, paused_on=clock.uk_today(), paused_by="b"
        )
    assert await service.pool.fetchval("SELECT status FROM package_changes WHERE change_id = $1", change_id) == (
        "withdrawn"
    )
    # The provider is told (found by an attack: the change stayed open on its portal), once.
    [withdrawn] = of_type(await outbox_types(service, package_id), "ChangeWithdrawn")
    assert (withdrawn["change_id"], withdrawn["provider_id"], withdrawn["because"]) == (
        str(change_id),
        ids["prime_best"],
        "paused",
    )
    assert (withdrawn["hours_per_week"], withdrawn["previous_hours_per_week"]) == ("10.50", "7.00")
    await answer_change(broker, package_id, change_id, ids["prime_best"])
    assert not of_type(await outbox_types(service, package_id), "PackageChanged")
    assert await status(service, package_id) == "paused"


async def test_the_api_refuses_bad_changes_naming_the_field_and_writes_nothing(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    placed = await request(service, rules)  # placed, not started
    await answer(broker, placed, ids["prime_best"], rate="20.00")
    running = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=3))
    client = api(service)
    more = {"calls_per_day": 3, "minutes_per_call": 30, "carers_per_call": 1}
    fewer = {"calls_per_day": 1, "minutes_per_call": 30, "carers_per_call": 1}
    same = {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1}

    def body(visits, hours, **kw):
        return {
            "hours_per_week": hours,
            "visits": visits,
            "reason": "review_outcome",
            "effective_date": str(today),
        } | kw

    cases = [
        (placed, body(more, "10.5"), 409, "status"),
        (running, body(fewer, "3.5"), 422, "discussed_with_person"),
        (running, body(fewer, "3.5", discussed_with_person=False), 422, "discussed_with_person"),
        (running, body(more, "20"), 422, "hours_per_week"),
        (running, body(same, "7"), 422, "visits"),
        (running, body(more, "10.5", effective_date=str(today - dt.timedelta(days=4))), 422, "effective_date"),
        (running, body(more, "10.5", reason="bored"), 422, "reason"),
        (running, body(more, "10.5", changed_by="someone.else"), 422, "changed_by"),
    ]
    for package_id, payload, code, field in cases:
        before = await snapshot(service, package_id)
        changes = await service.pool.fetchval("SELECT count(*) FROM package_changes WHERE package_id = $1", package_id)
        response = await client.post(f"/packages/{package_id}/changes", json=payload)
        assert response.status_code == code, (payload, response.text)
        assert field in [f["field"] for f in response.json()["fields"]], (payload, response.json())
        assert await snapshot(service, package_id) == before, payload
        assert changes == await service.pool.fetchval(
            "SELECT count(*) FROM package_changes WHERE package_id = $1", package_id
        )
    good = await client.post(f"/packages/{running}/changes", json=body(fewer, "3.5", discussed_with_person=True))
    assert good.status_code == 202, good.text
    assert good.json()["status"] == "started" and good.json()["change_status"] == "pending"
    again = await client.post(f"/packages/{running}/changes", json=body(more, "10.5"))
    assert again.status_code == 409 and again.json()["fields"][0]["field"] == "change"
    view = (await client.get(f"/packages/{running}")).json()
    assert view["pending_change_id"] == good.json()["change_id"]
    assert view["changes"][0]["discussed_with_person"] is True and view["changes"][0]["status"] == "pending"


async def test_cancelling_while_rebrokering_a_declined_change_tells_the_provider_carrying_on(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    change_id = await change(service, rules, package_id, MORE, "10.5")
    await answer_change(broker, package_id, change_id, ids["prime_best"], decline=DeclineReason.capacity)
    assert await status(service, package_id) == "offered"
    async with unit_of_work(service.pool) as uow:
        await handlers.cancel(uow, package_id, reason=CancelReason.other, cancelled_by="broker.bob")
    [cancelled] = of_type(await outbox_types(service, package_id), "PackageCancelled")
    assert cancelled["provider_id"] == ids["prime_best"] and Decimal(cancelled["hours_per_week"]) == 7
    row = await service.pool.fetchrow("SELECT status, carried_on_by FROM packages WHERE package_id = $1", package_id)
    assert (row["status"], row["carried_on_by"]) == ("cancelled", None)
