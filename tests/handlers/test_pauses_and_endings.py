"""A running package's pauses and endings (decision record 0078) on the brokerage's handlers and
API, with a real PostgreSQL: who may be paused, resumed or ended, the hold timer ending a pause once,
and bad input refused with the field named and nothing written."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import httpx
import pytest

from schemas.events import ProviderUpdated
from schemas.vocabulary import CancelReason, EndReason, HandBackReason, PauseReason
from services.brokerage import domain, handlers
from services.brokerage import repository as repo
from services.runtime import clock, topics
from services.runtime.outbox import unit_of_work
from tests import local_issuer
from tests.handlers.market import answer, outbox_types, profile, request, run_timer, status


async def started(service, broker, rules, ids, *, started_on: dt.date | None = None) -> uuid.UUID:
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_best"], rate="20.00")
    if started_on is not None and started_on < clock.uk_today():
        # History: requested on the day care started (a start may not be dated before its request).
        await service.pool.execute(
            "UPDATE packages SET requested_at = $2 WHERE package_id = $1", package_id, clock.uk_day_start(started_on)
        )
    async with unit_of_work(service.pool) as uow:
        await handlers.record_start(
            uow,
            package_id,
            started_on=started_on or clock.uk_today(),
            recorded_by="broker.amy",
            # History as an installation backdating up to 60 days would record it: the review
            # queue's tests need starts 50 days ago (the default limit, 28, is tested below).
            date_limits=domain.DateLimits(backdate_days=60),
        )
    return package_id


async def in_hospital(service, rules, package_id, *, paused_on: dt.date | None = None) -> None:
    """Pause a started package for a hospital stay (by broker.amy; today unless ``paused_on``)."""
    async with unit_of_work(service.pool) as uow:
        await handlers.pause(
            uow,
            rules,
            package_id,
            reason=PauseReason.admitted_to_hospital,
            paused_on=paused_on or clock.uk_today(),
            paused_by="broker.amy",
        )


def api(service) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://brokerage",
        headers=local_issuer.headers("brokerage"),
    )


async def handed_back_and_placed(service, broker, client, package_id, provider_id, *, notice_ends_on: dt.date) -> None:
    """Hand the package back through the API (staff shortage, its notice's last day ``notice_ends_on``)
    and place it again with ``provider_id``."""
    handed = await client.post(
        f"/packages/{package_id}/hand-back", json={"notice_ends_on": str(notice_ends_on), "reason": "staff_shortage"}
    )
    assert handed.status_code == 200, handed.text
    offer_round = await service.pool.fetchval("SELECT current_round FROM packages WHERE package_id = $1", package_id)
    await answer(broker, package_id, provider_id, offer_round, rate="20.00")
    assert await status(service, package_id) == "placed"


async def snapshot(service, package_id) -> tuple:
    """What a refused request must leave untouched: the row, the timeline and the outbox."""
    row = await service.pool.fetchrow("SELECT * FROM packages WHERE package_id = $1", package_id)
    timeline = await service.pool.fetchval("SELECT count(*) FROM timeline WHERE package_id = $1", package_id)
    return dict(row), timeline, await outbox_types(service, package_id)


async def test_a_hospital_pause_keeps_the_provider_and_a_resume_runs_the_package_again(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    today = clock.uk_today()
    async with unit_of_work(service.pool) as uow:
        await handlers.pause(
            uow, rules, package_id, reason=PauseReason.admitted_to_hospital, paused_on=today, paused_by="broker.bob"
        )
    assert await status(service, package_id) == "paused"
    paused = [p for t, p in await outbox_types(service, package_id) if t == "PackagePaused"]
    assert len(paused) == 1
    assert paused[0]["provider_id"] == ids["prime_best"] and paused[0]["reason"] == "admitted_to_hospital"
    assert paused[0]["paid_during_hold"] is rules.pause_hold_paid and paused[0]["paused_by"] == "broker.bob"
    assert paused[0]["requested_by"] == "broker.amy"
    # While paused: not handed back, started again, cancelled or paused twice.
    for action in ("hand_back", "start", "cancel", "pause", "reoffer"):
        with pytest.raises(handlers.ActionRefused):
            async with unit_of_work(service.pool) as uow:
                if action == "hand_back":
                    await handlers.hand_back(
                        uow,
                        rules,
                        package_id,
                        notice_ends_on=today,
                        reason=HandBackReason.staff_shortage,
                        recorded_by="broker.amy",
                    )
                elif action == "start":
                    await handlers.record_start(uow, package_id, started_on=today, recorded_by="broker.amy")
                elif action == "cancel":
                    await handlers.cancel(uow, package_id, reason=CancelReason.other, cancelled_by="broker.amy")
                elif action == "pause":
                    await handlers.pause(
                        uow, rules, package_id, reason=PauseReason.respite_stay, paused_on=today, paused_by="x"
                    )
                else:
                    await handlers.reoffer(uow, rules, package_id, requested_by="broker.amy")
        assert await status(service, package_id) == "paused", action
    async with unit_of_work(service.pool) as uow:
        await handlers.resume(uow, rules, package_id, resumed_on=today, resumed_by="broker.bob")
    row = await service.pool.fetchrow(
        "SELECT status, provider_id, hold_expires_at FROM packages WHERE package_id = $1", package_id
    )
    assert (row["status"], row["provider_id"], row["hold_expires_at"]) == ("started", ids["prime_best"], None)
    kinds = [t for t, _ in await outbox_types(service, package_id)]
    assert (
        kinds[-2:] == ["PackagePaused", "PackageResumed"] and "OfferMade" not in kinds[kinds.index("PackagePaused") :]
    )
    stages = [
        r["stage"]
        for r in await service.pool.fetch("SELECT stage FROM timeline WHERE package_id = $1 ORDER BY id", package_id)
    ]
    assert stages[-2:] == ["paused", "resumed"]
    with pytest.raises(handlers.Refused) as not_paused:
        async with unit_of_work(service.pool) as uow:
            await handlers.resume(uow, rules, package_id, resumed_on=today, resumed_by="broker.bob")
    assert not_paused.value.refusal.status == 409 and not_paused.value.refusal.field == "status"


async def test_a_hold_that_runs_out_ends_the_package_once_even_with_two_timers_racing(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    await in_hospital(service, rules, package_id)
    async with unit_of_work(service.pool) as uow:
        assert await handlers.end_due_holds(uow, rules) != package_id, "the hold has not run out"
    await service.pool.execute(
        "UPDATE packages SET hold_expires_at = now() - interval '1 second' WHERE package_id = $1", package_id
    )
    taken = await asyncio.gather(*(run_timer(service, rules, handlers.end_due_holds) for _ in range(2)))
    assert sum(t.count(package_id) for t in taken) == 1, "two brokerage instances end it once"
    ended = [p for t, p in await outbox_types(service, package_id) if t == "PackageEnded"]
    assert len(ended) == 1
    assert ended[0]["reason"] == "hospital_stay_exceeded_hold" and ended[0]["ended_by"] == "schedule"
    assert ended[0]["was_paused"] is True and ended[0]["provider_id"] == ids["prime_best"]
    assert await status(service, package_id) == "ended"


async def test_a_death_ends_a_running_package_from_its_effective_date(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    today = clock.uk_today()
    async with unit_of_work(service.pool) as uow:
        await handlers.end_package(
            uow,
            rules,
            package_id,
            reason=EndReason.died,
            effective_date=today,
            ended_by="broker.bob",
            reason_text="words that stay in the brokerage",
        )
    ended = [p for t, p in await outbox_types(service, package_id) if t == "PackageEnded"]
    assert len(ended) == 1 and ended[0]["effective_date"] == today.isoformat() and ended[0]["reason"] == "died"
    assert "words" not in str(ended[0])
    row = await service.pool.fetchrow("SELECT * FROM packages WHERE package_id = $1", package_id)
    assert (row["status"], row["ended_on"], row["end_reason"]) == ("ended", today, "died")
    assert row["end_reason_text"] == "words that stay in the brokerage"
    with pytest.raises(handlers.Refused):  # not twice
        async with unit_of_work(service.pool) as uow:
            await handlers.end_package(
                uow, rules, package_id, reason=EndReason.died, effective_date=today, ended_by="broker.bob"
            )


async def test_the_api_refuses_bad_endings_and_pauses_naming_the_field_and_writes_nothing(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    placed = await request(service, rules)
    await answer(broker, placed, ids["prime_best"], rate="20.00")
    running = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=3))
    client = api(service)
    cases = [
        # A placed package not started is cancelled instead.
        (placed, "end", {"reason": "died", "effective_date": today.isoformat()}, 409, "status"),
        # Before care started.
        (
            running,
            "end",
            {"reason": "died", "effective_date": str(today - dt.timedelta(days=4))},
            422,
            "effective_date",
        ),
        # Too far ahead; too far back.
        (
            running,
            "end",
            {"reason": "needs_met", "effective_date": str(today + dt.timedelta(days=91))},
            422,
            "effective_date",
        ),
        # The platform's own code is not for staff to choose; a code not in the vocabulary.
        (running, "end", {"reason": "hospital_stay_exceeded_hold", "effective_date": str(today)}, 422, "reason"),
        (running, "end", {"reason": "bored", "effective_date": str(today)}, 422, "reason"),
        (
            running,
            "pause",
            {"reason": "admitted_to_hospital", "paused_on": str(today + dt.timedelta(days=1))},
            422,
            "paused_on",
        ),
        (
            running,
            "pause",
            {"reason": "admitted_to_hospital", "paused_on": str(today - dt.timedelta(days=4))},
            422,
            "paused_on",
        ),
        (running, "resume", {"resumed_on": str(today)}, 409, "status"),
        (placed, "pause", {"reason": "respite_stay", "paused_on": str(today)}, 409, "status"),
    ]
    for package_id, action, body, code, field in cases:
        before = await snapshot(service, package_id)
        response = await client.post(f"/packages/{package_id}/{action}", json=body)
        assert response.status_code == code, (action, body, response.text)
        problem = response.json()
        assert field in [f["field"] for f in problem["fields"]], (action, body, problem)
        # A rule's own words, not pydantic's "Value error, ..." before them (found by a new user).
        assert not [f for f in problem["errors"] if f["detail"].startswith("Value error")], problem
        assert await snapshot(service, package_id) == before, (action, body)
    # A start in the future is the domain's coded refusal, as a pause's is (it had been the request
    # model's generic invalid-request, with pydantic's prefix).
    before = await snapshot(service, placed)
    future = await client.post(f"/packages/{placed}/start", json={"started_on": str(today + dt.timedelta(days=1))})
    assert future.status_code == 422 and future.json()["type"].endswith(":date-in-future"), future.text
    assert future.json()["fields"][0]["field"] == "started_on"
    assert await snapshot(service, placed) == before
    # A pause dated before the start, and a resume before the pause.
    good = await client.post(
        f"/packages/{running}/pause", json={"reason": "admitted_to_hospital", "paused_on": str(today)}
    )
    assert good.status_code == 200 and good.json()["status"] == "paused"
    # While paused, the state's refusals name the status as the domain's do (these had named no field).
    before = await snapshot(service, running)
    for action, body in (
        ("start", {"started_on": str(today)}),
        ("cancel", {"reason": "other"}),
        ("hand-back", {"notice_ends_on": str(today), "reason": "other"}),
        ("reoffer", {}),
    ):
        refused = await client.post(f"/packages/{running}/{action}", json=body)
        assert refused.status_code == 409, (action, refused.text)
        assert refused.json()["type"].endswith(":action-not-allowed"), (action, refused.text)
        assert refused.json()["fields"][0]["field"] == "status", (action, refused.text)
    assert await snapshot(service, running) == before
    early = await client.post(f"/packages/{running}/resume", json={"resumed_on": str(today - dt.timedelta(days=1))})
    assert early.status_code == 422 and early.json()["fields"][0]["field"] == "resumed_on"
    end = await client.post(f"/packages/{running}/end", json={"reason": "died", "effective_date": str(today)})
    assert end.status_code == 200 and end.json()["status"] == "ended"
    view = (await client.get(f"/packages/{running}")).json()
    assert view["end_reason"] == "died" and view["ended_on"] == today.isoformat()
    assert [t["stage"] for t in view["timeline"]][-2:] == ["paused", "ended"]


async def test_a_start_a_hand_back_and_a_funding_record_dated_outside_the_limits_are_refused_writing_nothing(brokerage):
    """Found by an attack: a start on 1901-01-01 made the agreement payable from 1901 (and the review
    45,950 days overdue), a hand-back's notice to 2035 kept the leaving provider's agreement open
    beside the next one's for eight years, a funding record from 1901 reached the finance figures.
    Each date now keeps to the actions' limits (rules.date_limits: 28 days back, 90 ahead)."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    back, ahead = rules.date_limits.backdate_days, rules.date_limits.ahead_days
    placed = await request(service, rules)
    await answer(broker, placed, ids["prime_best"], rate="20.00")
    # Requested long ago (a start may not be dated before its request: tested below).
    await service.pool.execute(
        "UPDATE packages SET requested_at = requested_at - interval '400 days' WHERE package_id = $1", placed
    )
    client = api(service)
    cases = [
        (placed, "start", {"started_on": "1901-01-01"}, "started_on", "date-before-request"),
        (placed, "start", {"started_on": str(today - dt.timedelta(days=back + 1))}, "started_on", "date-too-far-back"),
        (
            placed,
            "hand-back",
            {"notice_ends_on": "2035-02-19", "reason": "other"},
            "notice_ends_on",
            "date-too-far-ahead",
        ),
        (
            placed,
            "hand-back",
            {"notice_ends_on": str(today + dt.timedelta(days=ahead + 1)), "reason": "other"},
            "notice_ends_on",
            "date-too-far-ahead",
        ),
        (
            placed,
            "hand-back",
            {"notice_ends_on": "1901-01-01", "reason": "other"},
            "notice_ends_on",
            "date-before-request",
        ),
        (
            placed,
            "hand-back",
            {"notice_ends_on": str(today - dt.timedelta(days=back + 1)), "reason": "other"},
            "notice_ends_on",
            "date-too-far-back",
        ),
    ]
    for package_id, action, body, field, code in cases:
        before = await snapshot(service, package_id)
        response = await client.post(f"/packages/{package_id}/{action}", json=body)
        assert response.status_code == 422, (action, body, response.text)
        problem = response.json()
        assert [f["field"] for f in problem["fields"]] == [field] and problem["type"].endswith(code), problem
        assert await snapshot(service, package_id) == before, (action, body)
    first_day = dt.date.fromisoformat((await client.get(f"/packages/{placed}")).json()["package"]["start_date"])
    # Before the package was requested (today): a start; before care started: a notice's end.
    fresh = await request(service, rules)
    await answer(broker, fresh, ids["prime_best"], rate="20.00")
    before = await snapshot(service, fresh)
    early = await client.post(f"/packages/{fresh}/start", json={"started_on": str(today - dt.timedelta(days=1))})
    assert early.status_code == 422 and early.json()["type"].endswith("date-before-request"), early.text
    assert await snapshot(service, fresh) == before
    # Found by an attack: a placed package's notice ending before anyone asked for care was taken
    # (the family told carers would keep coming until a day before the request).
    early = await client.post(
        f"/packages/{fresh}/hand-back", json={"notice_ends_on": str(today - dt.timedelta(days=1)), "reason": "other"}
    )
    assert early.status_code == 422 and early.json()["type"].endswith("date-before-request"), early.text
    assert await snapshot(service, fresh) == before
    running = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=3))
    before = await snapshot(service, running)
    notice = {"notice_ends_on": str(today - dt.timedelta(days=4)), "reason": "other"}
    early = await client.post(f"/packages/{running}/hand-back", json=notice)
    assert early.status_code == 422 and early.json()["type"].endswith("date-before-start"), early.text
    assert await snapshot(service, running) == before
    for effective_from in ("1901-01-01", str(first_day - dt.timedelta(days=back + 1))):
        before = await snapshot(service, placed)
        funding = {"periods": [{"effective_from": effective_from, "funder": "council"}]}
        response = await client.put(f"/packages/{placed}/funding", json=funding)
        assert response.status_code == 422, response.text
        assert response.json()["fields"][0]["field"] == "periods.0.effective_from"
        assert await snapshot(service, placed) == before
    # Inside the limits, each is recorded.
    funding = {"periods": [{"effective_from": str(first_day - dt.timedelta(days=back)), "funder": "council"}]}
    assert (await client.put(f"/packages/{placed}/funding", json=funding)).status_code == 200
    assert (await client.post(f"/packages/{placed}/start", json={"started_on": str(today)})).status_code == 200
    notice = {"notice_ends_on": str(today + dt.timedelta(days=ahead)), "reason": "other"}
    assert (await client.post(f"/packages/{placed}/hand-back", json=notice)).status_code == 200


async def test_a_provider_suspended_during_a_pause_loses_the_package_only_when_it_resumes(brokerage):
    """The package is brokered again at the resume, in the same transaction, from the day visits
    restart; the provider is paid through its hold to that day's eve and gets no new agreement. Its
    PackageResumed says why (``reopened_because``), so that the provider is told "re-brokered"
    alone, not first "resumed" (found by an attack: decision 0162)."""
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids, started_on=clock.uk_today() - dt.timedelta(days=5))
    today = clock.uk_today()
    await in_hospital(service, rules, package_id, paused_on=today - dt.timedelta(days=2))
    suspended = profile(ids["prime_best"], "prime", cqc="outstanding", status="suspended")
    event = ProviderUpdated(correlation_id=uuid.uuid4(), revision=2, profile=suspended)
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.registry"))
    assert package_id not in await run_timer(service, rules, handlers.rebroker_due), "never while paused"
    assert await status(service, package_id) == "paused"
    resumed_on = today + dt.timedelta(days=1)
    async with unit_of_work(service.pool) as uow:
        await handlers.resume(uow, rules, package_id, resumed_on=resumed_on, resumed_by="broker.amy")
    events = await outbox_types(service, package_id)
    assert [t for t, _ in events][-4:] == ["PackagePaused", "PackageResumed", "PackageReopened", "OfferMade"]
    resumed, reopened = events[-3][1], events[-2][1]
    assert resumed["reopened_because"] == reopened["reason"] == "provider_suspended"
    assert reopened["provider_id"] == ids["prime_best"]
    assert await status(service, package_id) == "offered"
    assert package_id not in await run_timer(service, rules, handlers.rebroker_due), "re-brokered once"
    row = await service.pool.fetchrow(
        "SELECT start_date, rebroker_due_at FROM packages WHERE package_id = $1", package_id
    )
    assert (row["start_date"], row["rebroker_due_at"]) == (resumed_on, None)
    rows = await service.pool.fetch(
        f"SELECT provider_id, end_date FROM service_agreements s WHERE package_id = $1 "
        f"AND status = 'agreed' AND {repo.IN_FORCE} ORDER BY start_date",
        package_id,
    )
    ends = [(r["provider_id"], r["end_date"]) for r in rows]
    if rules.pause_hold_paid:  # paid through the hold, to the eve of the day visits were to restart
        assert ends == [(ids["prime_best"], today)]
    else:  # unpaid from the pause (decision 0110), and no agreement opened again at the resume
        assert ends == [(ids["prime_best"], today - dt.timedelta(days=3))]


async def test_a_running_package_is_re_brokered_from_today_and_a_provider_gone_after_a_suspension_is_said_gone(
    brokerage,
):
    """Found by an attack: a package whose care began before the start its request asked for was
    re-brokered to start on that requested date, nobody visiting in between; and a provider
    suspended, then gone, was still said to be suspended. Care running is needed from today (one not
    yet started keeps its planned start); the newer status gives the reason."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    planned = today + dt.timedelta(days=6)
    running, placed = (
        await request(service, rules, start_date=planned),
        await request(service, rules, start_date=planned),
    )
    for package_id in (running, placed):
        await answer(broker, package_id, ids["prime_best"], rate="20.00")
    async with unit_of_work(service.pool) as uow:
        await handlers.record_start(uow, running, started_on=today, recorded_by="broker.amy")
    for revision, state in ((2, "suspended"), (3, "left")):
        gone = profile(ids["prime_best"], "prime", cqc="outstanding", status=state)
        event = ProviderUpdated(correlation_id=uuid.uuid4(), revision=revision, profile=gone)
        await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.registry"))
    assert set(await run_timer(service, rules, handlers.rebroker_due)) >= {running, placed}
    for package_id, start in ((running, today), (placed, planned)):
        events = await outbox_types(service, package_id)
        [reopened] = [p for t, p in events if t == "PackageReopened"]
        assert reopened["reason"] == "provider_left", package_id
        row = await service.pool.fetchrow("SELECT status, start_date FROM packages WHERE package_id = $1", package_id)
        assert (row["status"], row["start_date"]) == ("offered", start), package_id


async def test_a_provider_suspended_after_a_resume_recorded_ahead_is_replaced_on_the_day_visits_restart(brokerage):
    """Found by a second attack: a resume recorded for a day ahead (the person still in hospital),
    then the provider suspended, re-brokered the package to start today and cancelled the paid hold.
    The new provider starts on the resume day; a paid hold runs to its eve."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=5))
    await in_hospital(service, rules, package_id, paused_on=today - dt.timedelta(days=2))
    home_on = today + dt.timedelta(days=3)
    async with unit_of_work(service.pool) as uow:
        await handlers.resume(uow, rules, package_id, resumed_on=home_on, resumed_by="broker.amy")
    suspended = profile(ids["prime_best"], "prime", cqc="outstanding", status="suspended")
    event = ProviderUpdated(correlation_id=uuid.uuid4(), revision=2, profile=suspended)
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("providers.registry"))
    assert package_id in await run_timer(service, rules, handlers.rebroker_due)
    assert await service.pool.fetchval("SELECT start_date FROM packages WHERE package_id = $1", package_id) == home_on
    rows = await service.pool.fetch(
        f"SELECT provider_id, end_date FROM service_agreements s WHERE package_id = $1 "
        f"AND status = 'agreed' AND {repo.IN_FORCE} ORDER BY start_date",
        package_id,
    )
    # Paid through the hold to the eve of the resume day; unpaid, to the eve of the pause (the
    # agreement the resume opened from its day is cancelled with the re-brokering).
    last_day = home_on - dt.timedelta(days=1) if rules.pause_hold_paid else today - dt.timedelta(days=3)
    assert [(r["provider_id"], r["end_date"]) for r in rows] == [(ids["prime_best"], last_day)]


async def test_the_provider_may_read_the_person_while_paused_and_until_an_endings_effective_date(
    brokerage, monkeypatch
):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    providers = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://brokerage",
        headers=local_issuer.headers("brokerage", "service-providers", roles=("service:providers",)),
    )
    ask = {
        "package_id": str(package_id),
        "provider_id": ids["prime_best"],
        "credential_id": "0123456789abcdef",
        "fields": ["address"],
    }

    async def disclosed() -> int:
        return (await providers.post("/internal/disclosures", json=ask)).status_code

    today = clock.uk_today()
    async with unit_of_work(service.pool) as uow:
        await handlers.pause(
            uow, rules, package_id, reason=PauseReason.respite_stay, paused_on=today, paused_by="broker.amy"
        )
    assert await disclosed() == 200
    async with unit_of_work(service.pool) as uow:
        await handlers.end_package(
            uow,
            rules,
            package_id,
            reason=EndReason.moved_to_residential_care,
            effective_date=today + dt.timedelta(days=3),
            ended_by="broker.amy",
        )
    assert await disclosed() == 200, "the provider cares for the person until the effective date"
    # The effective date comes: the package has ended, and its agreement ended the day before. (The
    # clock moves, not the records: a record changed in place would leave the finance lines behind.)
    monkeypatch.setattr(clock, "uk_today", lambda: today + dt.timedelta(days=3))
    assert await disclosed() == 403


async def test_after_a_hand_back_the_next_provider_is_paid_from_the_day_after_the_notice_never_beside_it(brokerage):
    """Found by an attack: a hand-back restarted the package on the notice's last day (both
    providers told to visit that day, the leaving one unpaid for it), and the next provider's start
    could be recorded on any day after the request, so two or three providers' agreements were
    payable for the same days. The leaving provider is paid to its last day of care; the next
    one's start is after it (422 ``date-before-handover``, nothing written)."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    running = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=3))
    client = api(service)
    notice_ends_on = today - dt.timedelta(days=1)  # recorded the day after the notice ran out
    handed = await client.post(
        f"/packages/{running}/hand-back", json={"notice_ends_on": str(notice_ends_on), "reason": "staff_shortage"}
    )
    assert handed.status_code == 200, handed.text
    reopened = (await client.get(f"/packages/{running}")).json()["package"]
    assert reopened["start_date"] == str(today)  # the notice has ended: care is needed from today
    offer_round = await service.pool.fetchval("SELECT current_round FROM packages WHERE package_id = $1", running)
    await answer(broker, running, ids["prime_good"], offer_round, rate="20.00")
    assert await status(service, running) == "placed"
    before = await snapshot(service, running)
    for day in (notice_ends_on, today - dt.timedelta(days=2)):
        early = await client.post(f"/packages/{running}/start", json={"started_on": str(day)})
        assert early.status_code == 422 and early.json()["type"].endswith("date-before-handover"), early.text
        assert early.json()["fields"][0]["field"] == "started_on"
        assert await snapshot(service, running) == before
    assert (await client.post(f"/packages/{running}/start", json={"started_on": str(today)})).status_code == 200
    rows = await service.pool.fetch(
        f"SELECT provider_id, start_date, end_date FROM service_agreements s WHERE package_id = $1 "
        f"AND status = 'agreed' AND {repo.IN_FORCE} ORDER BY start_date",
        running,
    )
    assert [(r["provider_id"], r["start_date"], r["end_date"]) for r in rows] == [
        (ids["prime_best"], today - dt.timedelta(days=3), notice_ends_on),  # paid to its last day of care
        (ids["prime_good"], today, None),
    ]


async def test_a_provider_working_its_notice_or_carrying_on_still_reads_the_person(brokerage, monkeypatch):
    """Found by an attack: after a hand-back the leaving provider, told to keep visiting until its
    notice ends, was refused the person's details at once. A provider still paid for today's care
    by an agreement in force reads them; after its last day, or never having started, it does not."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=2))
    providers = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://brokerage",
        headers=local_issuer.headers("brokerage", "service-providers", roles=("service:providers",)),
    )

    async def disclosed(provider_id: str) -> int:
        ask = {
            "package_id": str(package_id),
            "provider_id": provider_id,
            "credential_id": "0123456789abcdef",
            "fields": ["address"],
        }
        return (await providers.post("/internal/disclosures", json=ask)).status_code

    handed = await api(service).post(
        f"/packages/{package_id}/hand-back",
        json={"notice_ends_on": str(today + dt.timedelta(days=5)), "reason": "staff_shortage"},
    )
    assert handed.status_code == 200, handed.text
    assert await disclosed(ids["prime_best"]) == 200, "it cares for the person until its notice ends"
    assert await disclosed(ids["prime_good"]) == 403, "offered the package, not yet placed with it"
    # The day after its last day (the clock moves, not the records).
    monkeypatch.setattr(clock, "uk_today", lambda: today + dt.timedelta(days=6))
    assert await disclosed(ids["prime_best"]) == 403
    disclosures = await service.pool.fetchval("SELECT count(*) FROM disclosures WHERE package_id = $1", package_id)
    assert disclosures == 1, "each read disclosed is audited, no refused one"


async def test_a_second_hand_back_before_the_next_provider_starts_restarts_the_package_after_the_first_notice(
    brokerage,
):
    """Found by an attack: the provider placed after a hand-back handed the package back before its
    first day, with a notice ending today; the package restarted tomorrow while the first provider was
    still paid to work its notice, so two providers were payable for the same days. The package is
    needed from its own start, the day after the first notice ends."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=1))
    client = api(service)
    first_notice = today + dt.timedelta(days=5)
    await handed_back_and_placed(service, broker, client, package_id, ids["prime_good"], notice_ends_on=first_notice)
    again = await client.post(
        f"/packages/{package_id}/hand-back", json={"notice_ends_on": str(today), "reason": "staff_shortage"}
    )
    assert again.status_code == 200, again.text
    view = (await client.get(f"/packages/{package_id}")).json()["package"]
    assert view["start_date"] == str(first_notice + dt.timedelta(days=1))
    rows = await service.pool.fetch(
        f"SELECT provider_id, start_date, end_date FROM service_agreements s WHERE package_id = $1 "
        f"AND status = 'agreed' AND {repo.IN_FORCE} ORDER BY start_date",
        package_id,
    )
    # The first provider paid to its notice's last day; the second, which never started, not at all.
    assert [(r["provider_id"], r["end_date"]) for r in rows] == [(ids["prime_best"], first_notice)]


async def test_a_package_cancelled_while_its_provider_works_a_notice_stops_that_provider_paid_to_today(brokerage):
    """Decision 0159: the person died while the package, handed back with notice, was being brokered
    again. Cancelling it ends the leaving provider's agreement today (it had run to the notice's end)
    and names that provider on PackageCancelled, so it is told to stand its carers down and its
    hours are released."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=4))
    client = api(service)
    notice_ends_on = today + dt.timedelta(days=10)
    handed = await client.post(
        f"/packages/{package_id}/hand-back", json={"notice_ends_on": str(notice_ends_on), "reason": "staff_shortage"}
    )
    assert handed.status_code == 200, handed.text
    cancelled = await client.post(f"/packages/{package_id}/cancel", json={"reason": "person_died"})
    assert cancelled.status_code == 200, cancelled.text
    rows = await service.pool.fetch(
        f"SELECT provider_id, start_date, end_date FROM service_agreements s WHERE package_id = $1 "
        f"AND status = 'agreed' AND {repo.IN_FORCE} ORDER BY start_date",
        package_id,
    )
    assert [(r["provider_id"], r["end_date"]) for r in rows] == [(ids["prime_best"], today)], "paid to today"
    event = json.loads(
        await service.pool.fetchval(
            "SELECT payload FROM outbox WHERE type = 'PackageCancelled' AND aggregateid = $1", str(package_id)
        )
    )
    assert event["provider_id"] == ids["prime_best"], "the provider still visiting is told to stop"


async def test_cancelled_after_a_new_provider_was_placed_both_it_and_the_provider_working_its_notice_stop(brokerage):
    """Found by an attack: a package handed back with notice, placed again, then cancelled (the
    person died) told the new provider only; the one still working its notice was not told and was
    paid to the notice's end. Both are named on PackageCancelled; the notice is paid to today."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=4))
    client = api(service)
    notice_ends_on = today + dt.timedelta(days=10)
    await handed_back_and_placed(service, broker, client, package_id, ids["prime_good"], notice_ends_on=notice_ends_on)
    cancelled = await client.post(f"/packages/{package_id}/cancel", json={"reason": "person_died"})
    assert cancelled.status_code == 200, cancelled.text
    event = json.loads(
        await service.pool.fetchval(
            "SELECT payload FROM outbox WHERE type = 'PackageCancelled' AND aggregateid = $1", str(package_id)
        )
    )
    assert (event["provider_id"], event["notice_provider_ids"]) == (ids["prime_good"], [ids["prime_best"]])
    rows = await service.pool.fetch(
        f"SELECT provider_id, status, end_date FROM service_agreements s WHERE package_id = $1 AND {repo.IN_FORCE} "
        "ORDER BY provider_id",
        package_id,
    )
    by_provider = {r["provider_id"]: (r["status"], r["end_date"]) for r in rows}
    assert by_provider[ids["prime_best"]] == ("agreed", today), "its notice paid to today"
    assert by_provider[ids["prime_good"]][0] == "cancelled", "the new provider never started"


async def test_a_resume_once_the_hold_has_run_out_is_a_409_hold_expired_and_writes_nothing(brokerage):
    """Found by an attack: a resume a moment after the provider's hold ran out (before the hold timer
    ended the package) was taken; then, refused, its answer carried the generic action-not-allowed
    in place of the refusal's own code."""
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=2))
    client = api(service)
    paused = await client.post(
        f"/packages/{package_id}/pause", json={"reason": "admitted_to_hospital", "paused_on": str(today)}
    )
    assert paused.status_code == 200, paused.text
    expires = await service.pool.fetchval("SELECT hold_expires_at FROM packages WHERE package_id = $1", package_id)
    before = await snapshot(service, package_id)
    with clock.frozen(expires):
        late = await client.post(f"/packages/{package_id}/resume", json={"resumed_on": str(clock.uk_today())})
    assert late.status_code == 409, late.text
    assert late.json()["type"].endswith(":hold-expired") and late.json()["code"] == "hold-expired"
    assert await snapshot(service, package_id) == before
    with clock.frozen(expires - dt.timedelta(seconds=1)):
        in_time = await client.post(f"/packages/{package_id}/resume", json={"resumed_on": str(clock.uk_today())})
    assert in_time.status_code == 200, in_time.text
