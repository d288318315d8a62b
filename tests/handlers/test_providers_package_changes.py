"""The providers service's side of changes to a running package (decision record 0082), on the
in-memory broker and a real PostgreSQL: the holding provider's automatic adapter accepts or declines
by its rules, a portal adapter answers through the provider API, an accepted change moves the
committed hours by the difference once, and over any sequence of changes, declines and replacements
a provider's committed hours are its live placements' current hours."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import (
    ChangeDeclined,
    ChangeOffered,
    ChangeWithdrawn,
    OfferMade,
    PackageChanged,
    PackageEnded,
    PackageHandedOver,
    VisitPattern,
)
from schemas.vocabulary import DeclineReason
from services.providers import handlers
from services.providers.app import build
from services.runtime import clock, topics
from services.runtime.outbox import unit_of_work
from tests.handlers.test_provider_webhook_self_service import client
from tests.handlers.test_providers_handlers import award, committed, offer, placed_package, willing
from tests.handlers.test_providers_pauses_and_endings import live_hours

PATTERNS = {
    Decimal("3.5"): VisitPattern(calls_per_day=1, minutes_per_call=30, carers_per_call=1),
    Decimal("7"): VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1),
    Decimal("10.5"): VisitPattern(calls_per_day=3, minutes_per_call=30, carers_per_call=1),
}


def change_offered(event: OfferMade, provider_id: str, hours: str, previous: str = "7") -> ChangeOffered:
    spec = event.package.model_copy(update={"hours_per_week": Decimal(hours), "visits": PATTERNS[Decimal(hours)]})
    return ChangeOffered(
        correlation_id=event.package_id,
        package_id=event.package_id,
        change_id=uuid.uuid4(),
        provider_id=provider_id,
        package=spec,
        previous_hours_per_week=Decimal(previous),
        reason="needs_increased_after_fall",
        effective_date=clock.uk_today(),
        window_closes_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=48),
        requested_by="broker.amy",
    )


def changed(offered: ChangeOffered) -> PackageChanged:
    return PackageChanged(
        correlation_id=offered.package_id,
        package_id=offered.package_id,
        change_id=offered.change_id,
        provider_id=offered.provider_id,
        package=offered.package,
        previous_hours_per_week=offered.previous_hours_per_week,
        hours_per_week=offered.package.hours_per_week,
        reason=offered.reason,
        effective_date=offered.effective_date,
        discussed_with_person=True,
        changed_by="broker.bob",
        requested_by="broker.amy",
        changed_at=dt.datetime.now(dt.UTC),
    )


def withdrawal(offered: ChangeOffered) -> ChangeWithdrawn:
    """The brokerage withdrawing the change (the package was paused)."""
    return ChangeWithdrawn(
        correlation_id=offered.package_id,
        package_id=offered.package_id,
        change_id=offered.change_id,
        provider_id=offered.provider_id,
        because="paused",
        hours_per_week=offered.package.hours_per_week,
        previous_hours_per_week=offered.previous_hours_per_week,
        withdrawn_at=dt.datetime.now(dt.UTC),
    )


async def holding(in_memory):
    """A package placed with a willing provider whose adapter is automatic (other tests may have
    left it a portal or webhook one)."""
    service, broker, topic, event, pid = await placed_package(in_memory)
    await service.pool.execute(
        "UPDATE providers SET adapter = jsonb_set(adapter, '{kind}', '\"automatic\"') WHERE provider_id = $1", pid
    )
    return service, broker, topic, event, pid


async def webhook_adapter(service, pid) -> None:
    """Make the provider a webhook one, POSTed at https://example.org/hook (:func:`automatic_again` after)."""
    await service.pool.execute(
        """UPDATE providers SET adapter = adapter || '{"kind": "webhook", "webhook_url": "https://example.org/hook"}'
            WHERE provider_id = $1""",
        pid,
    )


async def automatic_again(service, pid) -> None:
    """Make the provider an automatic one again (the seeded market is shared by the session's tests)."""
    await service.pool.execute(
        "UPDATE providers SET adapter = jsonb_set(adapter - 'webhook_url', '{kind}', '\"automatic\"') "
        "WHERE provider_id = $1",
        pid,
    )


async def answers(service, package_id) -> list[dict]:
    rows = await service.pool.fetch(
        "SELECT payload FROM outbox WHERE aggregateid = $1 AND type = 'ChangeAnswered' ORDER BY seq", str(package_id)
    )
    return [json.loads(r["payload"]) for r in rows]


async def test_an_automatic_adapter_accepts_an_increase_and_the_hours_move_once(in_memory):
    service, broker, topic, event, pid = await holding(in_memory)
    [before] = await committed(service, pid)
    offered = change_offered(event, pid, "10.5")
    for _ in range(2):
        await broker.publish(offered.model_dump_json().encode(), topic=topic)
    [answer] = await answers(service, event.package_id)
    assert answer["accepted"] is True and answer["adapter"] == "automatic" and answer["reason"] is None
    assert await committed(service, pid) == [before], "an answer commits nothing: the brokerage decides"
    applied = changed(offered)
    await broker.publish(applied.model_dump_json().encode(), topic=topic)
    await broker.publish(applied.model_copy(update={"event_id": uuid.uuid4()}).model_dump_json().encode(), topic=topic)
    assert await committed(service, pid) == [before + Decimal("3.5")]
    assert await live_hours(service, pid) >= Decimal("10.5")
    row = await service.pool.fetchrow("SELECT * FROM change_offers WHERE change_id = $1", offered.change_id)
    assert row["status"] == "applied"


async def test_an_increase_beyond_the_free_hours_is_declined_and_the_provider_carries_on(in_memory):
    service, broker, topic, event, pid = await holding(in_memory)
    await service.pool.execute(
        "UPDATE providers SET weekly_capacity_hours = committed_hours + held_hours + 1 WHERE provider_id = $1", pid
    )
    [before] = await committed(service, pid)
    offered = change_offered(event, pid, "10.5")
    await broker.publish(offered.model_dump_json().encode(), topic=topic)
    [answer] = await answers(service, event.package_id)
    assert answer["accepted"] is False and answer["reason"] == "capacity"
    declined = ChangeDeclined(
        correlation_id=event.package_id,
        package_id=event.package_id,
        change_id=offered.change_id,
        provider_id=pid,
        outcome="declined",
        decline_reason="capacity",
        previous_hours_per_week=Decimal("7"),
        hours_per_week=Decimal("10.5"),
        reason="needs_increased_after_fall",
        declined_at=dt.datetime.now(dt.UTC),
    )
    await broker.publish(declined.model_dump_json().encode(), topic=topic)
    assert await service.pool.fetchval("SELECT status FROM change_offers WHERE change_id = $1", offered.change_id) == (
        "closed"
    )
    assert await committed(service, pid) == [before], "it carries on at the old hours"
    # A new provider takes over: the carried-on placement ends and its hours are released, once.
    second = next(p for p in await willing(service, 2) if p != pid)
    over = PackageHandedOver(
        correlation_id=event.package_id,
        package_id=event.package_id,
        from_provider_id=pid,
        to_provider_id=second,
        previous_hours_per_week=Decimal("7"),
        hours_per_week=Decimal("10.5"),
        handed_over_on=clock.uk_today(),
        handed_over_at=dt.datetime.now(dt.UTC),
    )
    for _ in range(2):
        await broker.publish(over.model_copy(update={"event_id": uuid.uuid4()}).model_dump_json().encode(), topic=topic)
    assert await committed(service, pid) == [before - 7]
    await broker.publish(
        award(event, second, 2, dt.datetime.now(dt.UTC))
        .model_copy(update={"hours_per_week": Decimal("10.5")})
        .model_dump_json()
        .encode(),
        topic=topic,
    )
    live = await service.pool.fetch(
        "SELECT provider_id FROM placements WHERE package_id = $1 AND ended_at IS NULL", event.package_id
    )
    assert [r["provider_id"] for r in live] == [second]


async def test_a_reduction_always_fits(in_memory):
    service, broker, topic, event, pid = await holding(in_memory)
    await service.pool.execute(
        "UPDATE providers SET weekly_capacity_hours = committed_hours + held_hours WHERE provider_id = $1", pid
    )
    fewer = change_offered(event, pid, "3.5")
    await broker.publish(fewer.model_dump_json().encode(), topic=topic)
    assert (await answers(service, event.package_id))[-1]["accepted"] is True


async def test_a_portal_adapter_answers_through_the_provider_api_once(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    try:
        await service.pool.execute(
            "UPDATE providers SET adapter = jsonb_set(adapter, '{kind}', '\"portal\"') WHERE provider_id = $1", pid
        )
        offered = change_offered(event, pid, "10.5")
        await broker.publish(offered.model_dump_json().encode(), topic=topic)
        assert await answers(service, event.package_id) == [], "a portal adapter answers later"
        with pytest.raises(LookupError):  # another provider cannot even see it
            async with unit_of_work(service.pool) as uow:
                await handlers.answer_change_through_api(uow, "someone-else", offered.change_id, accept=True)
        async with unit_of_work(service.pool) as uow:
            result = await handlers.answer_change_through_api(
                uow, pid, offered.change_id, accept=False, reason=DeclineReason.call_times
            )
        assert result["status"] == "declined"
        [answer] = await answers(service, event.package_id)
        assert answer["accepted"] is False and answer["reason"] == "call_times" and answer["adapter"] == "portal"
        with pytest.raises(handlers.Refused):
            async with unit_of_work(service.pool) as uow:
                await handlers.answer_change_through_api(uow, pid, offered.change_id, accept=True)
    finally:
        await automatic_again(service, pid)


step = st.tuples(st.sampled_from(["up", "down", "stale", "replace", "end"]), st.integers(0, 1))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(step, min_size=1, max_size=10))
async def test_property_committed_hours_are_the_live_placements_current_hours_after_any_changes(in_memory, script):
    service, broker = await in_memory(build, "providers")
    first, second = await willing(service, 2)
    topic = topics.resolve("brokerage.packages")
    base = {p: (await committed(service, p))[0] - await live_hours(service, p) for p in (first, second)}
    offers = [offer([first, second]) for _ in range(2)]
    rounds = [1, 1]
    for o in offers:
        await broker.publish(o.model_dump_json().encode(), topic=topic)
        await broker.publish(award(o, first, 1, dt.datetime.now(dt.UTC)).model_dump_json().encode(), topic=topic)
    for kind, n in script:
        o = offers[n]
        live = await service.pool.fetchrow(
            "SELECT provider_id, hours_per_week FROM placements WHERE package_id = $1 AND ended_at IS NULL",
            o.package_id,
        )
        if live is None:
            continue
        holder, hours = live["provider_id"], live["hours_per_week"]
        if kind in ("up", "down", "stale"):
            new = {"up": hours + Decimal("3.5"), "down": hours - Decimal("3.5"), "stale": hours}[kind]
            if new not in PATTERNS:
                continue
            previous = str(hours + 1 if kind == "stale" else hours)  # a stale change was made for other hours
            if kind == "stale":
                new = Decimal("10.5") if hours != Decimal("10.5") else Decimal("3.5")
            offered = change_offered(o, holder, str(new), previous=previous)
            await broker.publish(offered.model_dump_json().encode(), topic=topic)
            await broker.publish(changed(offered).model_dump_json().encode(), topic=topic)
        elif kind == "replace":  # declined, re-brokered: the new provider's award replaces the old placement
            rounds[n] += 1
            other = second if holder == first else first
            event = award(o, other, rounds[n], dt.datetime.now(dt.UTC)).model_copy(update={"hours_per_week": hours})
            await broker.publish(event.model_dump_json().encode(), topic=topic)
        else:
            ending = PackageEnded(
                correlation_id=o.package_id,
                package_id=o.package_id,
                provider_id=holder,
                reason="needs_met",
                effective_date=clock.uk_today(),
                hours_per_week=hours,
                ended_by="broker.amy",
                ended_at=dt.datetime.now(dt.UTC),
            )
            await broker.publish(ending.model_dump_json().encode(), topic=topic)
        for p in (first, second):
            [now_committed] = await committed(service, p)
            assert now_committed == base[p] + await live_hours(service, p), (kind, n, p)


async def test_a_webhook_adapter_is_sent_the_change_to_answer_through_the_provider_api(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    try:
        await webhook_adapter(service, pid)
        offered = change_offered(event, pid, "10.5")
        for _ in range(2):
            await broker.publish(offered.model_dump_json().encode(), topic=topic)
        assert await answers(service, event.package_id) == [], "a webhook adapter answers later"
        rows = await service.pool.fetch("SELECT * FROM webhook_deliveries WHERE change_id = $1", offered.change_id)
        assert len(rows) == 1 and rows[0]["url"] == "https://example.org/hook" and rows[0]["offer_round"] is None
        notice = json.loads(rows[0]["body"])
        assert notice["kind"] == "change" and notice["change_id"] == str(offered.change_id)
        assert notice["answer_with"]["accept"] == f"/me/package-changes/{offered.change_id}/accept"
        assert "full_name" not in rows[0]["body"] and "nhs_number" not in rows[0]["body"]
    finally:
        await automatic_again(service, pid)


async def test_a_withdrawn_change_is_no_longer_open_nor_answerable_nor_posted(in_memory):
    """Found by an attack: a change the brokerage withdrew (the package was paused) stayed "offered"
    on the provider's portal, "accepting" it was taken (200), and a webhook adapter's delivery would
    have been retried until the window closed. ChangeWithdrawn closes the offer, once."""
    service, broker, topic, event, pid = await placed_package(in_memory)
    try:
        await webhook_adapter(service, pid)
        offered = change_offered(event, pid, "10.5")
        await broker.publish(offered.model_dump_json().encode(), topic=topic)
        withdrawn = withdrawal(offered)
        held = await service.pool.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", pid)
        for _ in range(2):  # a redelivery changes nothing more
            await broker.publish(withdrawn.model_dump_json().encode(), topic=topic)
        status = "SELECT status FROM {} WHERE change_id = $1"
        assert await service.pool.fetchval(status.format("change_offers"), offered.change_id) == "closed"
        assert await service.pool.fetchval(status.format("webhook_deliveries"), offered.change_id) == "withdrawn"
        assert await service.pool.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", pid) == held
        with pytest.raises(handlers.Refused):
            async with unit_of_work(service.pool) as uow:
                await handlers.answer_change_through_api(uow, pid, offered.change_id, accept=True)
        assert await answers(service, event.package_id) == []
    finally:
        await automatic_again(service, pid)


async def held(service, pid) -> Decimal:
    return await service.pool.fetchval("SELECT held_hours FROM providers WHERE provider_id = $1", pid)


async def second_package(service, broker, topic, pid) -> OfferMade:
    """Another 7-hour package placed with the same provider."""
    another = offer([pid])
    await broker.publish(another.model_dump_json().encode(), topic=topic)
    await broker.publish(award(another, pid, 1, dt.datetime.now(dt.UTC)).model_dump_json().encode(), topic=topic)
    return another


async def test_an_accepted_increase_holds_its_hours_so_a_second_one_at_once_cannot_take_them_too(in_memory):
    """Found by an attack (decision 0160): two increases on two of a provider's packages at once were
    both accepted against the same free hours; the second, applied, broke the capacity check and was
    dead-lettered - the brokerage had the new hours, the providers service the old ones, for good."""
    service, broker, topic, event, pid = await holding(in_memory)
    other = await second_package(service, broker, topic, pid)
    await service.pool.execute(
        "UPDATE providers SET weekly_capacity_hours = committed_hours + held_hours + 4 WHERE provider_id = $1", pid
    )
    [before], held_before = await committed(service, pid), await held(service, pid)
    first, second = change_offered(event, pid, "10.5"), change_offered(other, pid, "10.5")
    for offered in (first, second):  # both offered before either is applied
        await broker.publish(offered.model_dump_json().encode(), topic=topic)
    [accepted] = await answers(service, event.package_id)
    [declined] = await answers(service, other.package_id)
    assert accepted["accepted"] is True
    assert declined["accepted"] is False and declined["reason"] == "capacity", "the first's extra hours are taken"
    assert await held(service, pid) == held_before + Decimal("3.5"), "held from the answer"
    for _ in range(2):  # applied, and redelivered: the held hours become committed, once
        await broker.publish(changed(first).model_copy(update={"event_id": uuid.uuid4()}).model_dump_json().encode(),
                             topic=topic)  # fmt: skip
    assert await committed(service, pid) == [before + Decimal("3.5")]
    assert await held(service, pid) == held_before


async def test_an_accepted_increase_withdrawn_before_it_is_applied_frees_the_hours_it_held(in_memory):
    service, broker, topic, event, pid = await holding(in_memory)
    [before], held_before = await committed(service, pid), await held(service, pid)
    offered = change_offered(event, pid, "10.5")
    await broker.publish(offered.model_dump_json().encode(), topic=topic)
    assert await held(service, pid) == held_before + Decimal("3.5")
    withdrawn = withdrawal(offered)
    for _ in range(2):
        await broker.publish(withdrawn.model_dump_json().encode(), topic=topic)
    assert await held(service, pid) == held_before and await committed(service, pid) == [before]


async def test_a_portal_accepting_a_second_increase_the_first_took_the_room_for_is_refused(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    try:
        await service.pool.execute(
            "UPDATE providers SET adapter = jsonb_set(adapter, '{kind}', '\"portal\"') WHERE provider_id = $1", pid
        )
        other = await second_package(service, broker, topic, pid)
        await service.pool.execute(
            "UPDATE providers SET weekly_capacity_hours = committed_hours + held_hours + 4 WHERE provider_id = $1", pid
        )
        first, second = change_offered(event, pid, "10.5"), change_offered(other, pid, "10.5")
        for offered in (first, second):
            await broker.publish(offered.model_dump_json().encode(), topic=topic)
        async with unit_of_work(service.pool) as uow:
            await handlers.answer_change_through_api(uow, pid, first.change_id, accept=True)
        with pytest.raises(handlers.Refused, match="raise your capacity"):
            async with unit_of_work(service.pool) as uow:
                await handlers.answer_change_through_api(uow, pid, second.change_id, accept=True)
    finally:
        await automatic_again(service, pid)


async def test_the_provider_s_packages_show_the_package_as_changed_not_as_first_offered(in_memory):
    """Found by an attack: after an accepted change to 3 calls a day (10.5 h), GET /me/packages still
    showed the offer's 2 calls (7 h)."""
    service, broker, topic, event, pid = await holding(in_memory)
    async with unit_of_work(service.pool) as uow:
        token = (await handlers.issue_credential(uow, pid, label="test", replace=False))["token"]
    offered = change_offered(event, pid, "10.5")
    # The brokerage's change starts on its effective date; the package's start stays the offer's.
    effective = clock.uk_today() + dt.timedelta(days=3)
    offered = offered.model_copy(
        update={"effective_date": effective, "package": offered.package.model_copy(update={"start_date": effective})}
    )
    await broker.publish(offered.model_dump_json().encode(), topic=topic)
    await broker.publish(changed(offered).model_dump_json().encode(), topic=topic)
    async with client(service, token) as provider:
        mine = (await provider.get("/me/packages", params={"limit": 200})).json()
    [shown] = [p for p in mine if p["package_id"] == str(event.package_id)]
    assert Decimal(shown["hours_per_week"]) == Decimal("10.5")
    assert Decimal(shown["package"]["hours_per_week"]) == Decimal("10.5")
    assert shown["package"]["visits"]["calls_per_day"] == 3, "the visit pattern as changed"
    assert shown["package"]["start_date"] == str(event.package.start_date), "not the change's effective date"
