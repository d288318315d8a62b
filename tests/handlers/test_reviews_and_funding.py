"""Reviews (decision record 0088) and funding (decision record 0089) on the brokerage's handlers and API,
with a real PostgreSQL: a review's outcome recorded with who and when and the next review due a year
on; a change or an ending it decides made through the change and ending flows in the same
transaction; the review queue; funding periods with a joint split, the weekly cost split by funder,
a top-up apart from an above-rate exception; bad input refused with the field named and nothing
written."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from schemas.vocabulary import (
    ChangeReason,
    EndReason,
    ExceptionDecisionReason,
    Funder,
    PauseReason,
    ReviewOutcome,
    TechnologyEnabledCare,
    TopUpPayer,
)
from services.brokerage import domain, handlers
from services.runtime import clock
from services.runtime.outbox import unit_of_work
from tests.handlers.market import answer, outbox_types, request, status
from tests.handlers.test_package_changes import FEWER, MORE, answer_change, of_type
from tests.handlers.test_pauses_and_endings import api, handed_back_and_placed, in_hospital, snapshot, started


async def review(service, rules, package_id, outcome, **kw):
    async with unit_of_work(service.pool) as uow:
        return await handlers.record_review(
            uow, rules, package_id, outcome=outcome, reviewed_on=clock.uk_today(), reviewed_by="reviewer.kim", **kw
        )


async def stages(service, package_id) -> list[str]:
    rows = await service.pool.fetch("SELECT stage FROM timeline WHERE package_id = $1 ORDER BY id", package_id)
    return [r["stage"] for r in rows]


async def test_a_start_sets_the_first_review_six_weeks_on_and_a_review_sets_the_next_a_year_on(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    package_id = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=3))
    due = await service.pool.fetchval("SELECT review_due_on FROM packages WHERE package_id = $1", package_id)
    assert due == today - dt.timedelta(days=3) + dt.timedelta(weeks=6)
    review_id = await review(service, rules, package_id, ReviewOutcome.no_change, notes="all well; daughter present")
    reviewed = of_type(await outbox_types(service, package_id), "PackageReviewed")
    assert len(reviewed) == 1
    event = reviewed[0]
    assert (event["review_id"], event["outcome"], event["reviewed_by"], event["provider_id"]) == (
        str(review_id),
        "no_change",
        "reviewer.kim",
        ids["prime_best"],
    )
    assert event["due_on"] == due.isoformat() and event["change_id"] is None
    assert event["next_review_due_on"] == domain.add_months(today, 12).isoformat()
    assert "notes" not in event and "daughter" not in str(event), "the reviewer's words stay in the brokerage"
    row = await service.pool.fetchrow("SELECT * FROM package_reviews WHERE review_id = $1", review_id)
    assert (row["reviewed_by"], row["reviewed_on"], row["notes"]) == (
        "reviewer.kim",
        today,
        "all well; daughter present",
    )
    package = await service.pool.fetchrow(
        "SELECT status, review_due_on FROM packages WHERE package_id = $1", package_id
    )
    assert (package["status"], package["review_due_on"]) == ("started", domain.add_months(today, 12))
    assert (await stages(service, package_id))[-1] == "reviewed"
    assert not of_type(await outbox_types(service, package_id), "ChangeOffered")


async def test_a_review_deciding_a_change_offers_it_to_the_provider_and_its_acceptance_changes_the_package(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    today = clock.uk_today()
    change = handlers.ReviewChange(hours_per_week=Decimal("10.5"), visits=MORE, effective_date=today)
    await review(service, rules, package_id, ReviewOutcome.changed, change=change)
    events = await outbox_types(service, package_id)
    [reviewed], [offered] = of_type(events, "PackageReviewed"), of_type(events, "ChangeOffered")
    assert [t for t, _ in events][-2:] == ["PackageReviewed", "ChangeOffered"], "the review, then what it decided"
    assert reviewed["change_id"] == offered["change_id"] and offered["reason"] == ChangeReason.review_outcome
    change_row = await service.pool.fetchrow(
        "SELECT changed_by, status FROM package_changes WHERE change_id::text = $1", offered["change_id"]
    )
    assert (change_row["changed_by"], change_row["status"]) == ("reviewer.kim", "pending")
    await answer_change(broker, package_id, change_row and offered["change_id"], ids["prime_best"])
    [changed] = of_type(await outbox_types(service, package_id), "PackageChanged")
    assert Decimal(changed["hours_per_week"]) == Decimal("10.5") and changed["reason"] == "review_outcome"
    assert await service.pool.fetchval(
        "SELECT review_due_on FROM packages WHERE package_id = $1", package_id
    ) == domain.add_months(today, 12)


async def test_technology_enabled_care_is_a_reduction_through_the_change_flow_with_the_equipment_recorded(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    change = handlers.ReviewChange(
        hours_per_week=Decimal("3.5"), visits=FEWER, effective_date=clock.uk_today(), discussed_with_person=True
    )
    review_id = await review(
        service,
        rules,
        package_id,
        ReviewOutcome.technology_enabled_care,
        change=change,
        technology=[TechnologyEnabledCare.medication_dispenser, TechnologyEnabledCare.telecare_alarm],
    )
    [reviewed] = of_type(await outbox_types(service, package_id), "PackageReviewed")
    assert reviewed["technology"] == ["medication_dispenser", "telecare_alarm"]
    [offered] = of_type(await outbox_types(service, package_id), "ChangeOffered")
    assert Decimal(offered["package"]["hours_per_week"]) == Decimal("3.5")
    row = await service.pool.fetchrow(
        "SELECT technology, change_id FROM package_reviews WHERE review_id = $1", review_id
    )
    assert list(row["technology"]) == ["medication_dispenser", "telecare_alarm"]
    assert str(row["change_id"]) == offered["change_id"]


async def test_a_review_ending_the_package_goes_through_the_ending_and_leaves_no_review_due(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    ending = handlers.ReviewEnding(EndReason.moved_to_residential_care, clock.uk_today() + dt.timedelta(days=7))
    await review(service, rules, package_id, ReviewOutcome.ended, ending=ending)
    events = await outbox_types(service, package_id)
    assert [t for t, _ in events][-2:] == ["PackageReviewed", "PackageEnded"]
    [ended] = of_type(events, "PackageEnded")
    assert ended["reason"] == "moved_to_residential_care" and ended["ended_by"] == "reviewer.kim"
    assert of_type(events, "PackageReviewed")[0]["next_review_due_on"] is None
    row = await service.pool.fetchrow("SELECT status, review_due_on FROM packages WHERE package_id = $1", package_id)
    assert (row["status"], row["review_due_on"]) == ("ended", None)


async def test_the_review_queue_lists_overdue_then_due_reviews_of_running_packages_only(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    overdue = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=50))  # due 8 days ago
    due = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=35))  # due in 7 days
    later = await started(service, broker, rules, ids)  # due in 42 days
    placed = await request(service, rules)
    await answer(broker, placed, ids["prime_best"], rate="20.00")
    client = api(service)
    queue = (await client.get("/reviews", params={"limit": 1000})).json()
    mine = [r for r in queue["reviews"] if r["package_id"] in {str(overdue), str(due), str(later), str(placed)}]
    assert [(r["package_id"], r["state"], r["days_overdue"]) for r in mine] == [
        (str(overdue), "overdue", 8),
        (str(due), "due", -7),
    ]
    assert queue["counts"]["overdue"] >= 1 and queue["counts"]["due"] >= 1
    wider = (await client.get("/reviews", params={"within_days": 60, "limit": 1000})).json()
    assert [r["state"] for r in wider["reviews"] if r["package_id"] == str(later)] == ["upcoming"]
    # The counts count the items by their states (an upcoming review had been counted as due).
    assert wider["total"] <= 1000, "the page holds the whole queue"
    states = ("overdue", "due", "upcoming")
    assert wider["counts"] == {s: sum(r["state"] == s for r in wider["reviews"]) for s in states}
    # Reviewed: off the queue until a year on.
    await review(service, rules, overdue, ReviewOutcome.no_change)
    again = (await client.get("/reviews", params={"limit": 1000})).json()
    assert str(overdue) not in [r["package_id"] for r in again["reviews"]]
    bad = await client.get("/reviews", params={"zone": "atlantis"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "zone"


async def test_a_review_refused_names_the_problem_and_writes_nothing(brokerage):
    service, broker, rules, ids = brokerage
    today = clock.uk_today()
    running = await started(service, broker, rules, ids, started_on=today - dt.timedelta(days=3))
    paused = await started(service, broker, rules, ids)
    async with unit_of_work(service.pool) as uow:
        await handlers.pause(
            uow, rules, paused, reason=PauseReason.admitted_to_hospital, paused_on=today, paused_by="broker.amy"
        )
    placed = await request(service, rules)
    await answer(broker, placed, ids["prime_best"], rate="20.00")
    assert await status(service, placed) == "placed"
    more = {"hours_per_week": "10.5", "visits": MORE.model_dump(), "effective_date": str(today)}
    fewer = {**more, "hours_per_week": "3.5", "visits": FEWER.model_dump(), "discussed_with_person": True}
    cases = [
        # Not running: a placed package is not reviewed (nor is a cancelled or ended one).
        (placed, {"outcome": "no_change", "reviewed_on": str(today)}, 409, "status"),
        # A paused package may be reviewed, but a change needs a started one.
        (paused, {"outcome": "changed", "reviewed_on": str(today), "change": more}, 409, "status"),
        (running, {"outcome": "no_change", "reviewed_on": str(today + dt.timedelta(days=1))}, 422, "reviewed_on"),
        (running, {"outcome": "no_change", "reviewed_on": str(today - dt.timedelta(days=4))}, 422, "reviewed_on"),
        (running, {"outcome": "changed", "reviewed_on": str(today)}, 422, "change"),
        (running, {"outcome": "no_change", "reviewed_on": str(today), "change": more}, 422, "change"),
        (running, {"outcome": "ended", "reviewed_on": str(today)}, 422, "end"),
        (
            running,
            {"outcome": "technology_enabled_care", "reviewed_on": str(today), "change": fewer},
            422,
            "technology",
        ),
        (
            running,
            {
                "outcome": "technology_enabled_care",
                "reviewed_on": str(today),
                "change": more,
                "technology": ["telecare_alarm"],
            },
            422,
            "change.hours_per_week",
        ),
        # The change flow's own rules, named within the review's change.
        (
            running,
            {"outcome": "changed", "reviewed_on": str(today), "change": {**more, "hours_per_week": "30"}},
            422,
            "change.hours_per_week",
        ),
        (
            running,
            {"outcome": "changed", "reviewed_on": str(today), "change": {**fewer, "discussed_with_person": None}},
            422,
            "change.discussed_with_person",
        ),
        # The ending flow's: before care started.
        (
            running,
            {
                "outcome": "ended",
                "reviewed_on": str(today),
                "end": {"reason": "died", "effective_date": str(today - dt.timedelta(days=5))},
            },
            422,
            "end.effective_date",
        ),
        (running, {"outcome": "maybe", "reviewed_on": str(today)}, 422, "outcome"),
    ]
    client = api(service)
    for package_id, body, code, field in cases:
        before = await snapshot(service, package_id)
        reviews = await service.pool.fetchval("SELECT count(*) FROM package_reviews WHERE package_id = $1", package_id)
        response = await client.post(f"/packages/{package_id}/reviews", json=body)
        assert response.status_code == code, (body, response.text)
        assert field in [f["field"] for f in response.json()["fields"]], (body, response.json())
        assert await snapshot(service, package_id) == before, body
        assert (
            await service.pool.fetchval("SELECT count(*) FROM package_reviews WHERE package_id = $1", package_id)
            == reviews
        )
    # A change already awaiting the provider: the review's change is refused, 409 naming it.
    ok = await client.post(
        f"/packages/{running}/reviews", json={"outcome": "changed", "reviewed_on": str(today), "change": more}
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["next_review_due_on"] == domain.add_months(today, 12).isoformat()
    pending = await client.post(
        f"/packages/{running}/reviews", json={"outcome": "changed", "reviewed_on": str(today), "change": fewer}
    )
    assert pending.status_code == 409 and pending.json()["fields"][0]["field"] == "change"
    # Nor a review finding "no change" while the change is in flight (found by an attack: the
    # provider and the family were told "no change", then "changed"); nothing written.
    before = await snapshot(service, running)
    unchanged = await client.post(
        f"/packages/{running}/reviews", json={"outcome": "no_change", "reviewed_on": str(today)}
    )
    assert unchanged.status_code == 409 and unchanged.json()["fields"][0]["field"] == "change", unchanged.text
    assert await snapshot(service, running) == before
    view = (await client.get(f"/packages/{running}")).json()
    assert [r["outcome"] for r in view["reviews"]] == ["changed"] and view["reviews"][0]["reviewed_by"] == "demo-broker"
    assert view["review_due_on"] == domain.add_months(today, 12).isoformat()


# ---- funding -------------------------------------------------------------------------------------


async def test_nhs_first_four_weeks_then_the_council_is_one_record_and_the_weekly_cost_splits_by_funder(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    today = clock.uk_today()
    body = {
        "periods": [
            {"effective_from": str(today), "funder": "nhs_discharge"},
            {
                "effective_from": str(today + dt.timedelta(weeks=4)),
                "funder": "joint",
                "shares": [
                    {"funder": "council", "percent": "66.67"},
                    {"funder": "nhs_continuing_healthcare", "percent": "33.33"},
                ],
            },
        ],
        "reason_text": "CHC assessment agreed a share",
    }
    client = api(service)
    recorded = await client.put(f"/packages/{package_id}/funding", json=body)
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["funding_revision"] == 1
    [event] = of_type(await outbox_types(service, package_id), "FundingRecorded")
    assert [p["funder"] for p in event["periods"]] == ["nhs_discharge", "joint"]
    assert event["periods"][0]["shares"] == [{"funder": "nhs_discharge", "percent": "100"}]
    assert event["provider_id"] == ids["prime_best"] and event["recorded_by"] == "demo-broker"
    assert "CHC" not in str(event), "the broker's words stay in the brokerage"
    first = (await client.get(f"/packages/{package_id}/funding")).json()
    # 7 h x 20.00 = 140.00 a week, the NHS's alone for four weeks.
    assert first["in_force"]["funder"] == "nhs_discharge"
    assert first["weekly_cost"] == {
        "total": "140.00",
        "by_funder": {"nhs_discharge": "140.00"},
        "parts": [{"funder": "nhs_discharge", "basis": "share", "calls": [], "pounds": "140.00"}],
        "above_band": "0.00",
        "above_band_paid_by": None,
        "above_band_is": None,
    }
    later = (
        await client.get(f"/packages/{package_id}/funding", params={"on": str(today + dt.timedelta(weeks=5))})
    ).json()
    assert later["in_force"]["funder"] == "joint"
    split = later["weekly_cost"]["by_funder"]
    assert split == {"council": "93.34", "nhs_continuing_healthcare": "46.66"}
    assert sum(Decimal(v) for v in split.values()) == Decimal("140.00")
    # Those who may not see prices see who pays, not the pounds.
    ops = api(service)
    from tests import local_issuer

    ops.headers.update(local_issuer.headers("brokerage", "ops.olu", ("operations",)))
    seen = (await ops.get(f"/packages/{package_id}/funding")).json()
    assert seen["in_force"]["funder"] == "nhs_discharge" and seen["weekly_cost"] is None
    assert (await ops.put(f"/packages/{package_id}/funding", json=body)).status_code == 403


async def test_a_top_up_pays_the_difference_above_the_band_rate_where_an_exception_is_the_councils(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await request(service, rules)
    await answer(broker, package_id, ids["prime_good"], rate="24.00")
    await answer(broker, package_id, ids["prime_best"], rate="26.00")
    await answer(broker, package_id, ids["supp"], offer_round=2, decline="capacity")
    async with unit_of_work(service.pool) as uow:
        await handlers.decide_exception(
            uow,
            rules,
            package_id,
            approve=True,
            decided_by="manager.jo",
            approver_roles=frozenset({"manager"}),
            reason=ExceptionDecisionReason.specialist_needs,
        )
    row = await service.pool.fetchrow("SELECT hourly_rate, band_rate FROM packages WHERE package_id = $1", package_id)
    assert row["hourly_rate"] > row["band_rate"]
    start = await service.pool.fetchval("SELECT spec->>'start_date' FROM packages WHERE package_id = $1", package_id)
    client = api(service)
    council = {"periods": [{"effective_from": start, "funder": "council"}]}
    assert (await client.put(f"/packages/{package_id}/funding", json=council)).status_code == 200
    exception = (await client.get(f"/packages/{package_id}/funding", params={"on": start})).json()["weekly_cost"]
    above = (Decimal(7) * (row["hourly_rate"] - row["band_rate"])).quantize(Decimal("0.01"))
    assert (exception["above_band"], exception["above_band_paid_by"], exception["above_band_is"]) == (
        str(above),
        "council",
        "above_rate_exception",
    )
    assert exception["by_funder"] == {"council": str((Decimal(7) * row["band_rate"]).quantize(Decimal("0.01")))}
    topped = council | {"top_up_paid_by": "third_party"}
    assert (await client.put(f"/packages/{package_id}/funding", json=topped)).status_code == 200
    top_up = (await client.get(f"/packages/{package_id}/funding", params={"on": start})).json()
    assert top_up["revision"] == 2 and top_up["top_up_paid_by"] == "third_party"
    cost = top_up["weekly_cost"]
    assert (cost["above_band"], cost["above_band_paid_by"], cost["above_band_is"]) == (
        str(above),
        "third_party",
        "top_up",
    )
    assert Decimal(cost["total"]) == sum(Decimal(v) for v in cost["by_funder"].values()) + above
    events = of_type(await outbox_types(service, package_id), "FundingRecorded")
    assert [e["revision"] for e in events] == [1, 2] and events[-1]["top_up"] == {"paid_by": "third_party"}


async def test_a_funding_split_not_adding_up_to_100_is_refused_naming_it_and_nothing_is_written(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    today = clock.uk_today()
    client = api(service)
    joint = {"effective_from": str(today), "funder": "joint"}
    cases = [
        (
            [
                joint
                | {"shares": [{"funder": "council", "percent": "60"}, {"funder": "nhs_discharge", "percent": "30"}]}
            ],
            "periods.0.shares",
            "90%",
        ),
        ([joint | {"shares": [{"funder": "council", "percent": "100"}]}], "periods.0.shares", "two or more"),
        (
            [{"effective_from": str(today), "funder": "council", "shares": [{"funder": "council", "percent": "50"}]}],
            "periods.0.shares",
            "50%",
        ),
        (
            [
                {"effective_from": str(today), "funder": "council"},
                {"effective_from": str(today), "funder": "self_funder"},
            ],
            "periods.1.effective_from",
            "not after",
        ),
        (
            [{"effective_from": str(today + dt.timedelta(days=1)), "funder": "council"}],
            "periods.0.effective_from",
            "without a funder",
        ),
        ([{"effective_from": str(today), "funder": "lottery"}], "periods.0.funder", ""),
        # Days outside the platform's calendar (schemas/calendar.py): year 1 first, year 9999 next.
        ([{"effective_from": "0001-01-01", "funder": "council"}], "periods.0.effective_from", "1900-01-01"),
        (
            [
                {"effective_from": str(today), "funder": "council"},
                {"effective_from": "9999-12-31", "funder": "council"},
            ],
            "periods.1.effective_from",
            "2999-12-31",
        ),
    ]
    for periods, field, words in cases:
        before = await snapshot(service, package_id)
        response = await client.put(f"/packages/{package_id}/funding", json={"periods": periods})
        assert response.status_code == 422, (periods, response.text)
        problem = response.json()
        fields = {f["field"]: f for f in problem["fields"]}
        assert any(f.replace("[", ".").replace("]", "") == field.replace("[", ".").replace("]", "") for f in fields), (
            field,
            problem,
        )
        assert words in response.text, (words, problem)
        assert await snapshot(service, package_id) == before
        assert (
            await service.pool.fetchval("SELECT count(*) FROM package_funding WHERE package_id = $1", package_id) == 0
        )
    # Ended with its last day gone: the funding can no longer change.
    async with unit_of_work(service.pool) as uow:
        await handlers.end_package(
            uow, rules, package_id, reason=EndReason.died, effective_date=today, ended_by="broker.amy"
        )
    gone = await client.put(
        f"/packages/{package_id}/funding", json={"periods": [{"effective_from": str(today), "funder": Funder.council}]}
    )
    assert gone.status_code == 409 and gone.json()["fields"][0]["field"] == "status"
    assert TopUpPayer.person  # the vocabulary has a first-party top-up too


# ---- funding per call (decision record 0121) -----------------------------------------------------


async def test_the_nhs_paying_the_morning_call_is_one_record_and_the_week_splits_by_call(brokerage):
    """2 calls a day, 7 h x 20.00 = 140.00 a week: the NHS pays call 1 whole (half the week), the
    council the rest; the event names the call, the finance record has a calls line, the timeline
    shows it; a change to one call a day is refused until the funding is recorded again."""
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    today = clock.uk_today()
    client = api(service)
    body = {
        "periods": [
            {"effective_from": str(today), "funder": "council", "calls": [{"call": 1, "funder": "nhs_discharge"}]}
        ]
    }
    recorded = await client.put(f"/packages/{package_id}/funding", json=body)
    assert recorded.status_code == 200, recorded.text
    [event] = of_type(await outbox_types(service, package_id), "FundingRecorded")
    assert event["schema_version"] == 2
    assert event["periods"][0]["calls"] == [{"call": 1, "funder": "nhs_discharge"}]
    cost = (await client.get(f"/packages/{package_id}/funding")).json()["weekly_cost"]
    assert cost["by_funder"] == {"nhs_discharge": "70.00", "council": "70.00"}
    assert [(p["funder"], p["basis"], p["calls"]) for p in cost["parts"]] == [
        ("nhs_discharge", "calls", [1]),
        ("council", "share", []),
    ]
    records = of_type(await outbox_types(service, package_id, agreements=True), "ServiceAgreementRecorded")
    lines = records[-1]["funding"][-1]["lines"]
    assert [(x["payer"], x["basis"], x["calls"], x["percent"], x["pounds_per_week"]) for x in lines] == [
        ("nhs_discharge", "calls", [1], "50.00", "70.00"),
        ("council", "share", [], "50.00", "70.00"),
    ]
    timeline = await service.pool.fetch(
        "SELECT detail FROM timeline WHERE package_id = $1 AND stage = 'funding recorded'", package_id
    )
    assert '"call": 1' in timeline[-1]["detail"]
    # One call a day would lose the NHS's call: 422 naming the visits, nothing written.
    before = await snapshot(service, package_id)
    fewer = {
        "hours_per_week": "3.5",
        "visits": {"calls_per_day": 1, "minutes_per_call": 30, "carers_per_call": 1},
        "reason": "reablement_progress",
        "effective_date": str(today + dt.timedelta(days=7)),
        "discussed_with_person": True,
    }
    refused = await client.post(f"/packages/{package_id}/changes", json=fewer)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "visits.calls_per_day"
    assert "record the funding again" in refused.json()["errors"][0]["detail"]
    assert await snapshot(service, package_id) == before
    # Recorded again without the call, the change goes through.
    again = await client.put(
        f"/packages/{package_id}/funding", json={"periods": [{"effective_from": str(today), "funder": "council"}]}
    )
    assert again.status_code == 200, again.text
    assert (await client.post(f"/packages/{package_id}/changes", json=fewer)).status_code == 202


async def test_bad_calls_are_a_422_naming_the_field_and_nothing_is_written(brokerage):
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    today = str(clock.uk_today())
    client = api(service)

    def period(calls, funder="council", shares=None):
        return {"periods": [{"effective_from": today, "funder": funder, "calls": calls} | {"shares": shares}]}

    joint = [{"funder": "council", "percent": "60"}, {"funder": "nhs_continuing_healthcare", "percent": "30"}]
    cases = [
        (period([{"call": 3, "funder": "nhs_discharge"}]), "periods.0.calls.0.call"),  # 2 calls a day
        (
            period([{"call": 1, "funder": "nhs_discharge"}, {"call": 1, "funder": "self_funder"}]),
            "periods.0.calls.1.call",
        ),
        (period([{"call": 1, "funder": "joint"}]), "periods.0.calls.0.funder"),
        (period([{"call": 1, "funder": "council"}]), "periods.0.calls.0.funder"),
        (
            period([{"call": 1, "funder": "nhs_discharge"}, {"call": 2, "funder": "nhs_discharge"}]),
            "periods.0.calls",
        ),
        (period([{"call": 1, "funder": "nhs_discharge"}], "joint", joint), "periods.0.shares"),  # 90%
        (period([{"call": 7, "funder": "nhs_discharge"}]), "periods.0.calls.0.call"),
    ]
    before = await snapshot(service, package_id)
    for asked, field in cases:
        response = await client.put(f"/packages/{package_id}/funding", json=asked)
        assert response.status_code == 422, (field, response.text)
        assert field in [e["field"] for e in response.json()["errors"]], (field, response.json())
    assert await snapshot(service, package_id) == before


async def test_who_pays_is_told_to_a_provider_placed_later_and_to_one_still_working_its_notice(brokerage):
    """Found by an attack (decision 0161): a provider placed after the funding was recorded was never
    told who pays (it invoices each funder), and a funding change that rewrote the split of a
    provider still working its notice after a hand-back told only the new holder."""
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    today = clock.uk_today()
    client = api(service)
    nhs_first = {
        "periods": [
            {"effective_from": str(today), "funder": "nhs_discharge"},
            {"effective_from": str(today + dt.timedelta(weeks=4)), "funder": "council"},
        ]
    }
    assert (await client.put(f"/packages/{package_id}/funding", json=nhs_first)).status_code == 200
    notice_ends_on = today + dt.timedelta(days=7)
    await handed_back_and_placed(service, broker, client, package_id, ids["prime_good"], notice_ends_on=notice_ends_on)
    [recorded, again] = of_type(await outbox_types(service, package_id), "FundingRecorded")
    assert (recorded["provider_id"], recorded["for_new_provider"]) == (ids["prime_best"], False)
    assert (again["provider_id"], again["for_new_provider"], again["revision"]) == (ids["prime_good"], True, 1)
    assert again["periods"] == recorded["periods"], "the record unchanged"

    council = {"periods": [{"effective_from": str(today), "funder": "council"}]}
    assert (await client.put(f"/packages/{package_id}/funding", json=council)).status_code == 200
    changed = of_type(await outbox_types(service, package_id), "FundingRecorded")[-1]
    assert changed["provider_id"] == ids["prime_good"]
    assert changed["other_provider_ids"] == [ids["prime_best"]], "its notice's split changed too"


async def test_a_review_of_a_paused_package_says_it_was_paused(brokerage):
    """Found by an attack: a "no change" review of a package paused for a hospital stay told the
    provider to carry on visiting; the event now says the package was paused, and notifications word
    it so (tests/unit/test_notifications_domain.py)."""
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    await review(service, rules, package_id, ReviewOutcome.no_change)
    await in_hospital(service, rules, package_id)
    await review(service, rules, package_id, ReviewOutcome.no_change)
    reviews = of_type(await outbox_types(service, package_id), "PackageReviewed")
    assert [r["paused"] for r in reviews] == [False, True]


async def test_an_ended_package_shows_no_review_due(brokerage):
    """Found by a new user: a package ended through its own route still showed its next review."""
    service, broker, rules, ids = brokerage
    package_id = await started(service, broker, rules, ids)
    client = api(service)
    assert (await client.get(f"/packages/{package_id}")).json()["review_due_on"] is not None
    today = clock.uk_today()
    ended = await client.post(f"/packages/{package_id}/end", json={"reason": "died", "effective_date": str(today)})
    assert ended.status_code == 200, ended.text
    view = (await client.get(f"/packages/{package_id}")).json()
    assert (view["status"], view["review_due_on"]) == ("ended", None)
