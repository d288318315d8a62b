"""The providers service's side of pauses and endings (decision record 0078), on the in-memory
broker and a real PostgreSQL: a paused placement keeps its hours, an ending releases them on its
effective date (at once, or by the endings timer when the date comes), each once; and over any
sequence of awards, pauses, resumes and endings a provider's committed hours are its live
placements' hours."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import (
    PackageCancelled,
    PackageEnded,
    PackageHandedBack,
    PackagePaused,
    PackagePlaced,
    PackageResumed,
    parse_event,
)
from services.providers import handlers
from services.providers.app import build
from services.runtime import clock, topics
from services.runtime.outbox import unit_of_work
from tests.handlers.test_providers_handlers import award, committed, offer, placed_package, willing


def ended(package_id: uuid.UUID, provider_id: str, effective: dt.date, at: dt.datetime | None = None) -> PackageEnded:
    return PackageEnded(
        correlation_id=package_id,
        package_id=package_id,
        provider_id=provider_id,
        reason="died",
        effective_date=effective,
        hours_per_week=Decimal("7"),
        ended_by="broker.amy",
        requested_by="broker.amy",
        ended_at=at or dt.datetime.now(dt.UTC),
    )


def handed_back(
    package_id: uuid.UUID, provider_id: str, notice_ends_on: dt.date, at: dt.datetime | None = None
) -> PackageHandedBack:
    return PackageHandedBack(
        correlation_id=package_id,
        package_id=package_id,
        provider_id=provider_id,
        notice_ends_on=notice_ends_on,
        reason="staff_shortage",
        hours_per_week=Decimal("7"),
        recorded_by="broker.amy",
        recorded_at=at or dt.datetime.now(dt.UTC),
    )


def cancelled(package_id: uuid.UUID, provider_id: str, *, reason: str) -> PackageCancelled:
    return PackageCancelled(
        correlation_id=package_id,
        package_id=package_id,
        reason=reason,
        cancelled_by="broker.amy",
        provider_id=provider_id,
        hours_per_week=Decimal("7"),
        cancelled_at=dt.datetime.now(dt.UTC),
    )


def paused(package_id: uuid.UUID, provider_id: str) -> PackagePaused:
    at = dt.datetime.now(dt.UTC)
    return PackagePaused(
        correlation_id=package_id,
        package_id=package_id,
        provider_id=provider_id,
        reason="admitted_to_hospital",
        paused_on=clock.uk_date(at),
        hold_expires_at=at + dt.timedelta(days=14),
        paid_during_hold=True,
        hours_per_week=Decimal("7"),
        paused_by="broker.amy",
        paused_at=at,
    )


def resumed(package_id: uuid.UUID, provider_id: str) -> PackageResumed:
    at = dt.datetime.now(dt.UTC)
    return PackageResumed(
        correlation_id=package_id,
        package_id=package_id,
        provider_id=provider_id,
        paused_on=clock.uk_date(at),
        resumed_on=clock.uk_date(at),
        hours_per_week=Decimal("7"),
        resumed_by="broker.amy",
        resumed_at=at,
    )


async def placement(service, package_id):
    return await service.pool.fetchrow("SELECT * FROM placements WHERE package_id = $1", package_id)


async def test_a_pause_keeps_the_hours_and_is_recorded_and_a_resume_clears_it(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    [before] = await committed(service, pid)
    for _ in range(2):  # redelivered: recorded once
        await broker.publish(paused(event.package_id, pid).model_dump_json().encode(), topic=topic)
    row = await placement(service, event.package_id)
    assert row["ended_at"] is None and row["pause_reason"] == "admitted_to_hospital" and row["paid_during_hold"]
    assert row["pauses"] == 1 and await committed(service, pid) == [before]
    await broker.publish(resumed(event.package_id, pid).model_dump_json().encode(), topic=topic)
    row = await placement(service, event.package_id)
    assert row["paused_on"] is None and row["pauses"] == 1 and row["ended_at"] is None
    assert await committed(service, pid) == [before]


async def test_an_ending_effective_today_releases_the_hours_once(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    [before] = await committed(service, pid)
    message = ended(event.package_id, pid, clock.uk_today()).model_dump_json().encode()
    for _ in range(2):
        await broker.publish(message, topic=topic)
    row = await placement(service, event.package_id)
    assert row["ended_at"] is not None and row["end_reason"] == "ended"
    assert await committed(service, pid) == [before - 7]
    updates = await service.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE type = 'ProviderUpdated' AND aggregateid = $1 "
        "AND payload->>'causation_id' = $2",
        pid,
        str(parse_event(message).event_id),
    )
    assert updates == 1, "the provider's new hours announced once"


async def test_an_ending_dated_ahead_keeps_the_hours_until_its_uk_date_then_the_timer_releases_them(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    [before] = await committed(service, pid)
    effective = clock.uk_today() + dt.timedelta(days=10)
    await broker.publish(ended(event.package_id, pid, effective).model_dump_json().encode(), topic=topic)
    row = await placement(service, event.package_id)
    assert row["ended_at"] is None and row["ends_on"] == effective and row["ending_reason"] == "died"
    assert await committed(service, pid) == [before]
    # The timer runs over every test's packages of this (shared) provider: what it releases of theirs
    # leaves the provider's other hours accounted for.
    base = await unaccounted(service, pid)
    assert event.package_id not in await run_the_endings_timer(service), "not yet due"
    # 00:30 BST... on the effective date in the UK: due (the UK date, not the UTC one).
    on_the_day = dt.datetime.combine(effective, dt.time(0, 5), tzinfo=clock.UK).astimezone(dt.UTC)
    with clock.frozen(on_the_day):
        released = await run_the_endings_timer(service)
    assert released.count(event.package_id) == 1
    assert (await placement(service, event.package_id))["ended_at"] is not None
    assert await unaccounted(service, pid) == base, "its 7 hours given back, once"


step = st.tuples(
    st.sampled_from(["place", "pause", "resume", "end", "end_ahead", "cancel", "hand_back", "due"]), st.integers(0, 2)
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(step, min_size=1, max_size=14))
async def test_property_committed_hours_are_the_live_placements_hours_after_any_sequence(in_memory, script):
    service, broker = await in_memory(build, "providers")
    [pid] = await willing(service, 1)
    topic = topics.resolve("brokerage.packages")
    # Three packages of this provider, each awarded at most once (a fresh package id per award).
    base = (await committed(service, pid))[0] - await live_hours(service, pid)
    offers = [offer([pid]) for _ in range(3)]
    for o in offers:
        await broker.publish(o.model_dump_json().encode(), topic=topic)
    placed: set[int] = set()
    for kind, n in script:
        o = offers[n]
        if kind == "place" and n not in placed:
            placed.add(n)
            event: object = award(o, pid, 1, dt.datetime.now(dt.UTC))
        elif kind == "pause":
            event = paused(o.package_id, pid)
        elif kind == "resume":
            event = resumed(o.package_id, pid)
        elif kind in ("end", "end_ahead"):
            ahead = dt.timedelta(days=3 if kind == "end_ahead" else 0)
            event = ended(o.package_id, pid, clock.uk_today() + ahead)
        elif kind == "cancel":
            event = cancelled(o.package_id, pid, reason="other")
        elif kind == "hand_back":  # two days' notice: the hours held until it ends (decision 0159)
            event = handed_back(o.package_id, pid, clock.uk_today() + dt.timedelta(days=2))
        elif kind == "due":
            with clock.frozen(dt.datetime.now(dt.UTC) + dt.timedelta(days=4)):
                while True:
                    async with unit_of_work(service.pool) as uow:
                        if await handlers.release_due_endings(uow) is None:
                            break
            event = None
        else:
            event = None
        if isinstance(
            event, PackagePlaced | PackagePaused | PackageResumed | PackageEnded | PackageCancelled | PackageHandedBack
        ):
            await broker.publish(event.model_dump_json().encode(), topic=topic)
        [now_committed] = await committed(service, pid)
        assert now_committed == base + await live_hours(service, pid), (kind, n)


async def run_the_endings_timer(service) -> list[uuid.UUID]:
    """Run the endings timer until nothing is due (other tests' packages too): the packages taken."""
    taken: list[uuid.UUID] = []
    while True:
        async with unit_of_work(service.pool) as uow:
            if (package_id := await handlers.release_due_endings(uow)) is None:
                return taken
        taken.append(package_id)


async def unaccounted(service, pid) -> Decimal:
    """The provider's committed hours less its live and held hours (:func:`live_hours`): constant
    whatever the timer releases, when each release gives back what was held."""
    [now_committed] = await committed(service, pid)
    return now_committed - await live_hours(service, pid)


async def live_hours(service, pid) -> Decimal:
    """The hours of the provider's live placements, and of those it still works a notice on."""
    return await service.pool.fetchval(
        "SELECT coalesce(sum(hours_per_week), 0) FROM placements WHERE provider_id = $1 AND (ended_at IS NULL "
        "OR (hours_held_until IS NOT NULL AND hours_released_at IS NULL))",
        pid,
    )


async def test_a_provider_working_its_notice_keeps_the_hours_until_the_day_after_then_the_timer_releases_them(
    in_memory,
):
    """Decision 0159: the package leaves the provider at the hand-back, its hours on the day after the
    notice's last day (UK), once, whatever the redeliveries and timer runs."""
    service, broker, topic, event, pid = await placed_package(in_memory)
    [before] = await committed(service, pid)
    last_day = clock.uk_today() + dt.timedelta(days=5)
    message = handed_back(event.package_id, pid, last_day).model_dump_json().encode()
    for _ in range(2):
        await broker.publish(message, topic=topic)
    row = await placement(service, event.package_id)
    assert row["ended_at"] is not None and row["end_reason"] == "handed_back", "the package is not its any more"
    assert row["hours_held_until"] == last_day and row["hours_released_at"] is None
    assert await committed(service, pid) == [before], "hours held while it works its notice"
    # The timer runs over every test's packages of this provider: what it releases of theirs leaves
    # the provider's other hours accounted for (unaccounted: committed less live and held hours).
    base = await unaccounted(service, pid)
    on_the_last_day = dt.datetime.combine(last_day, dt.time(23, 55), tzinfo=clock.UK).astimezone(dt.UTC)
    with clock.frozen(on_the_last_day):
        assert event.package_id not in await run_the_endings_timer(service), "still its last day"
    assert (await placement(service, event.package_id))["hours_released_at"] is None
    # 00:05 on the day after, UK time (the UTC date can still be the last day's in summer).
    day_after = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0, 5), tzinfo=clock.UK).astimezone(dt.UTC)
    with clock.frozen(day_after):
        released = await run_the_endings_timer(service)
        assert await run_the_endings_timer(service) == [], "nothing left to release"
    assert released.count(event.package_id) == 1, released
    assert (await placement(service, event.package_id))["hours_released_at"] is not None
    assert await unaccounted(service, pid) == base, "its 7 hours given back with the hold, once"
    announced = await service.pool.fetchval(
        "SELECT payload->'profile'->>'committed_hours' FROM outbox WHERE type = 'ProviderUpdated' AND aggregateid = $1 "
        "ORDER BY seq DESC LIMIT 1",
        pid,
    )
    assert [Decimal(announced)] == await committed(service, pid), "the brokerage hears of the hours given back"


async def test_a_hand_back_whose_notice_has_run_out_releases_the_hours_at_once(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    [before] = await committed(service, pid)
    message = handed_back(event.package_id, pid, clock.uk_today() - dt.timedelta(days=1)).model_dump_json().encode()
    await broker.publish(message, topic=topic)
    row = await placement(service, event.package_id)
    assert row["hours_held_until"] is None and row["hours_released_at"] is not None
    assert await committed(service, pid) == [before - 7]


async def test_a_package_ending_during_the_notice_releases_the_held_hours_on_its_effective_date(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    today = clock.uk_today()
    await broker.publish(
        handed_back(event.package_id, pid, today + dt.timedelta(days=20)).model_dump_json().encode(), topic=topic
    )
    effective = today + dt.timedelta(days=3)
    await broker.publish(ended(event.package_id, pid, effective).model_dump_json().encode(), topic=topic)
    assert (await placement(service, event.package_id))["hours_held_until"] == effective - dt.timedelta(days=1)
    base = await unaccounted(service, pid)
    on_the_day = dt.datetime.combine(effective, dt.time(0, 5), tzinfo=clock.UK).astimezone(dt.UTC)
    with clock.frozen(on_the_day):
        assert event.package_id in await run_the_endings_timer(service)
    assert (await placement(service, event.package_id))["hours_released_at"] is not None
    assert await unaccounted(service, pid) == base, "released when the package ended, not at the notice's end"


async def test_a_package_cancelled_during_the_notice_gives_the_held_hours_back_at_once(in_memory):
    service, broker, topic, event, pid = await placed_package(in_memory)
    [before] = await committed(service, pid)
    today = clock.uk_today()
    await broker.publish(
        handed_back(event.package_id, pid, today + dt.timedelta(days=20)).model_dump_json().encode(), topic=topic
    )
    message = cancelled(event.package_id, pid, reason="person_died")
    assert await committed(service, pid) == [before], "held through the notice"
    for _ in range(2):  # redelivered: released once
        await broker.publish(message.model_dump_json().encode(), topic=topic)
    assert (await placement(service, event.package_id))["hours_released_at"] is not None
    assert await committed(service, pid) == [before - 7]


async def test_a_notice_ending_before_the_placement_starts_holds_nothing(in_memory):
    """Found by an attack: a package placed to start in 20 days, handed back with a notice ending in
    3, kept the provider's hours for those 3 days though it would never visit (the brokerage had
    cancelled its agreement)."""
    service, broker = await in_memory(build, "providers")
    [pid] = await willing(service, 1)
    topic = topics.resolve("brokerage.packages")
    later = offer([pid])
    await broker.publish(later.model_dump_json().encode(), topic=topic)
    [before] = await committed(service, pid)
    start = clock.uk_today() + dt.timedelta(days=20)
    placed = award(later, pid, 1, dt.datetime.now(dt.UTC)).model_copy(update={"start_date": start})
    await broker.publish(placed.model_dump_json().encode(), topic=topic)
    assert await committed(service, pid) == [before + 7]
    await broker.publish(
        handed_back(later.package_id, pid, clock.uk_today() + dt.timedelta(days=3)).model_dump_json().encode(),
        topic=topic,
    )
    row = await placement(service, later.package_id)
    assert row["hours_held_until"] is None and row["hours_released_at"] is not None
    assert await committed(service, pid) == [before], "released at once: it never starts"
