"""Reviews (decision record 0088) and funding (decision record 0089) end to end: the three services as
processes on the real Kafka and PostgreSQL. A review whose outcome is a change, offered to the provider
through its adapter and accepted (the package and the provider's committed hours change); a review
with no change; the review queue; a funding record "the NHS for four weeks, then the council"; bad
input refused with the problem named and nothing written. Each party is told exactly once."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from services.bench.driver import wait_until_ready
from services.runtime import clock
from tests.e2e.test_package_changes import change_body, room_for
from tests.e2e.test_pauses_and_endings import committed, query, running_package, told, wait_for
from tests.support import staff


@pytest.fixture(scope="module")
async def ready(stack):
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_until_ready(
            client, {n: stack.url(n) for n in ("brokerage", "providers", "notifications")}, timeout=90
        )
    return stack


async def test_a_review_outcome_leading_to_a_change_is_offered_accepted_and_everyone_told_once(ready, database_url):
    view = await running_package(ready, 41)
    package_id, provider_id = view["package_id"], view["provider_id"]
    await room_for(ready, provider_id)
    before = await committed(database_url, provider_id)
    today = clock.uk_today()
    change = change_body(view, 15)
    del change["reason"]  # a review's change is always for the reason review_outcome
    [adapter] = await query(
        database_url, "SELECT adapter::text AS a FROM providers.providers WHERE provider_id = $1", provider_id
    )
    rules = json.loads(adapter["a"])
    async with httpx.AsyncClient(base_url=ready.url("providers"), auth=staff("demo-admin"), timeout=10) as admin:
        larger = await admin.put(f"/providers/{provider_id}/adapter", json=rules | {"max_package_hours": "80"})
        assert larger.status_code == 200, larger.text
        try:
            async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
                # Started today: its first review is due in six weeks, on the queue within 60 days.
                queue = (await api.get("/reviews", params={"within_days": 60, "limit": 1000})).json()
                [queued] = [r for r in queue["reviews"] if r["package_id"] == package_id]
                assert queued["review_due_on"] == (today + dt.timedelta(weeks=6)).isoformat()
                assert queued["state"] == "upcoming" and queued["days_overdue"] == -42
                reviewed = await api.post(
                    f"/packages/{package_id}/reviews",
                    json={"outcome": "changed", "reviewed_on": today.isoformat(), "change": change},
                )
                assert reviewed.status_code == 201, reviewed.text

                async def changed():
                    current = (await api.get(f"/packages/{package_id}")).json()
                    return current if current["changes"] and current["changes"][-1]["status"] != "pending" else None

                after = await wait_for(changed)
                queue = (await api.get("/reviews", params={"within_days": 60, "limit": 1000})).json()
        finally:
            assert (await admin.put(f"/providers/{provider_id}/adapter", json=rules)).status_code == 200
    assert after and after["changes"][-1]["status"] == "accepted", after and after["changes"]
    [review] = after["reviews"]
    assert (review["outcome"], review["reviewed_by"], review["change_id"]) == (
        "changed",
        "demo-broker",  # the token's user, never the body
        after["changes"][-1]["change_id"],
    )
    assert after["changes"][-1]["reason"] == "review_outcome"
    next_due = dt.date(today.year + 1, today.month, 28 if (today.month, today.day) == (2, 29) else today.day)
    assert review["next_review_due_on"] == after["review_due_on"] == next_due.isoformat()
    assert package_id not in [r["package_id"] for r in queue["reviews"]], "reviewed: off the queue for a year"
    assert Decimal(after["package"]["hours_per_week"]) == Decimal(change["hours_per_week"])
    extra = Decimal(change["hours_per_week"]) - Decimal(view["package"]["hours_per_week"])

    async def moved():
        return await committed(database_url, provider_id) == before + extra

    assert await wait_for(moved), "the provider's committed hours moved by the difference"
    # The review itself tells nobody: the change's messages do, each party once.
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
    rows = await query(
        database_url,
        "SELECT count(*) AS n FROM notifications.deliveries WHERE package_id::text = $1 AND event_type = $2",
        package_id,
        "PackageReviewed",
    )
    assert rows[0]["n"] == 0
    # The review is one of the package's events on Kafka: the notifications service read it (inbox).
    seen = await query(
        database_url,
        "SELECT count(*) AS n FROM brokerage.outbox WHERE aggregateid = $1 AND type = 'PackageReviewed'",
        package_id,
    )
    assert seen[0]["n"] == 1


async def test_a_review_with_no_change_tells_the_provider_and_the_family_once(ready, database_url):
    view = await running_package(ready, 42)
    package_id, provider_id = view["package_id"], view["provider_id"]
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        reviewed = await api.post(
            f"/packages/{package_id}/reviews",
            json={"outcome": "no_change", "reviewed_on": clock.uk_today().isoformat(), "notes": "all well"},
        )
        assert reviewed.status_code == 201, reviewed.text
    assert await told(database_url, package_id, "PackageReviewed", want=2) == Counter(
        {("provider", provider_id, "reviewed_provider"): 1, ("person", package_id, "reviewed_person"): 1}
    )


async def test_funding_nhs_first_then_the_council_is_one_record_told_once_and_a_bad_split_is_refused(
    ready, database_url
):
    view = await running_package(ready, 43)
    package_id, provider_id = view["package_id"], view["provider_id"]
    today = clock.uk_today()
    switch = today + dt.timedelta(weeks=4)
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        bad = await api.put(
            f"/packages/{package_id}/funding",
            json={
                "periods": [
                    {
                        "effective_from": today.isoformat(),
                        "funder": "joint",
                        "shares": [
                            {"funder": "council", "percent": "50"},
                            {"funder": "nhs_continuing_healthcare", "percent": "40"},
                        ],
                    }
                ]
            },
        )
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "periods.0.shares"
        assert "90%" in bad.text
        funding = {
            "periods": [
                {"effective_from": today.isoformat(), "funder": "nhs_discharge"},
                {"effective_from": switch.isoformat(), "funder": "council"},
            ]
        }
        recorded = await api.put(f"/packages/{package_id}/funding", json=funding)
        assert recorded.status_code == 200, recorded.text
        now = (await api.get(f"/packages/{package_id}/funding")).json()
        later = (await api.get(f"/packages/{package_id}/funding", params={"on": switch.isoformat()})).json()
        # Not running: a package already ended is not reviewed (409 naming the status), nothing written.
        ended = await api.post(
            f"/packages/{package_id}/end", json={"reason": "died", "effective_date": today.isoformat()}
        )
        assert ended.status_code == 200, ended.text
        late = await api.post(
            f"/packages/{package_id}/reviews", json={"outcome": "no_change", "reviewed_on": today.isoformat()}
        )
        assert late.status_code == 409 and late.json()["fields"][0]["field"] == "status"
    assert now["revision"] == 1 and now["in_force"]["funder"] == "nhs_discharge"
    assert later["in_force"]["funder"] == "council"
    weekly = Decimal(view["package"]["hours_per_week"]) * Decimal(view["hourly_rate"])
    assert now["weekly_cost"]["by_funder"] == {"nhs_discharge": str(weekly.quantize(Decimal("0.01")))}
    assert later["weekly_cost"]["by_funder"] == {"council": str(weekly.quantize(Decimal("0.01")))}
    written = await query(
        database_url,
        "SELECT (SELECT count(*) FROM brokerage.package_funding WHERE package_id::text = $1) AS funding, "
        "(SELECT count(*) FROM brokerage.package_reviews WHERE package_id::text = $1) AS reviews",
        package_id,
    )
    assert (written[0]["funding"], written[0]["reviews"]) == (1, 0), "the refused split and review wrote nothing"
    assert await told(database_url, package_id, "FundingRecorded", want=2) == Counter(
        {("provider", provider_id, "funding_provider"): 1, ("person", package_id, "funding_person"): 1}
    )


async def test_funding_per_call_the_nhs_pays_the_last_call_told_once_finance_sees_it_and_losing_it_is_refused(
    ready, database_url
):
    """Decision record 0121 on the real stack: a v2 FundingRecorded through Kafka to the notifications
    service (the provider and the family told once each); the weekly cost and the finance record split
    by call; a change to fewer calls a day that would lose the named call is a 422, nothing written."""
    view = await running_package(ready, 50)  # seed 50: every zone tried has 2 or more calls a day
    package_id, provider_id = view["package_id"], view["provider_id"]
    visits = view["package"]["visits"]
    calls = visits["calls_per_day"]
    assert calls >= 2
    today = clock.uk_today()
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
        funding = {
            "periods": [
                {
                    "effective_from": today.isoformat(),
                    "funder": "council",
                    "calls": [{"call": calls, "funder": "nhs_continuing_healthcare"}],
                }
            ]
        }
        recorded = await api.put(f"/packages/{package_id}/funding", json=funding)
        assert recorded.status_code == 200, recorded.text
        cost = (await api.get(f"/packages/{package_id}/funding")).json()["weekly_cost"]
        fewer = dict(visits) | {"calls_per_day": calls - 1}
        minutes = (calls - 1) * visits["minutes_per_call"] * visits["carers_per_call"] * visits["days_per_week"]
        refused = await api.post(
            f"/packages/{package_id}/changes",
            json={
                "hours_per_week": str((Decimal(minutes) / 60).quantize(Decimal("0.01"))),
                "visits": fewer,
                "reason": "reablement_progress",
                "effective_date": today.isoformat(),
                "discussed_with_person": True,
            },
        )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "visits.calls_per_day"
    at_band = Decimal(cost["total"]) - Decimal(cost["above_band"])
    assert sum(Decimal(v) for v in cost["by_funder"].values()) == at_band
    share = Decimal(cost["by_funder"]["nhs_continuing_healthcare"])
    assert abs(share - at_band / calls) < Decimal("0.01"), (share, at_band, calls)
    assert await told(database_url, package_id, "FundingRecorded", want=2) == Counter(
        {("provider", provider_id, "funding_provider"): 1, ("person", package_id, "funding_person"): 1}
    )
    [record] = await query(
        database_url,
        "SELECT funding, (SELECT count(*) FROM brokerage.package_changes WHERE package_id::text = $1) AS changes "
        "FROM brokerage.service_agreements WHERE package_id::text = $1 ORDER BY recorded_at DESC LIMIT 1",
        package_id,
    )
    lines = json.loads(record["funding"])[-1]["lines"]
    assert [(x["payer"], x["basis"], x["calls"]) for x in lines if x["basis"] == "calls"] == [
        ("nhs_continuing_healthcare", "calls", [calls])
    ]
    assert record["changes"] == 0, "the refused change wrote nothing"
