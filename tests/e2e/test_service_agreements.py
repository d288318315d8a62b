"""The hand-off to finance end to end (decision records 0109-0111): the services as processes on the real
Kafka, PostgreSQL and Keycloak. A placement, a change of hours accepted by the provider's adapter and an
ending produce service agreement records on brokerage.service-agreements, each correction superseding the
last; the finance role's import file has exactly the columns the guide documents (read from
docs/guide/finance.md) and a row per payer line of each record; the weekly commitment; a bad export
parameter is a 422 naming it; no person's detail on the topic."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from schemas.events import ServiceAgreementRecorded
from services.bench.driver import wait_until_ready
from services.runtime import clock, topics
from services.runtime.kafka import read_topic
from tests.e2e.test_package_changes import change_body, room_for
from tests.e2e.test_pauses_and_endings import query, running_package, wait_for
from tests.support import staff

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "finance.md"


def documented_columns() -> list[str]:
    """The import file's columns as the guide's data dictionary lists them, in order."""
    text = GUIDE.read_text().split("### Data dictionary", 1)[1]
    return re.findall(r"^\| `([A-Za-z]+)` \|", text, flags=re.MULTILINE)


@pytest.fixture(scope="module")
async def ready(stack):
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_until_ready(
            client, {n: stack.url(n) for n in ("brokerage", "providers", "notifications")}, timeout=90
        )
    return stack


async def records_on_topic(infra, package_id: str) -> list[ServiceAgreementRecorded]:
    found = []
    for record in await read_topic(infra.kafka, topics.resolve("brokerage.service-agreements")):
        event = ServiceAgreementRecorded.model_validate_json(record.value)
        if str(event.package_id) == package_id:
            assert record.key.decode() == package_id, "keyed by package id"
            found.append(event)
    return found


async def test_placement_change_and_ending_reach_finance_on_the_topic_and_in_the_documented_csv(
    ready, infra, database_url
):
    view = await running_package(ready, 61)
    package_id, provider_id = view["package_id"], view["provider_id"]
    await room_for(ready, provider_id)
    today = clock.uk_today()
    body = change_body(view, 15)
    [adapter] = await query(
        database_url, "SELECT adapter::text AS a FROM providers.providers WHERE provider_id = $1", provider_id
    )
    rules = json.loads(adapter["a"])
    async with httpx.AsyncClient(base_url=ready.url("providers"), auth=staff("demo-admin"), timeout=10) as admin:
        assert (
            await admin.put(f"/providers/{provider_id}/adapter", json=rules | {"max_package_hours": "80"})
        ).is_success
        try:
            async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as api:
                asked = await api.post(f"/packages/{package_id}/changes", json=body)
                assert asked.status_code == 202, asked.text

                async def changed():
                    current = (await api.get(f"/packages/{package_id}")).json()
                    return current if current["changes"] and current["changes"][-1]["status"] != "pending" else None

                after = await wait_for(changed)
                assert after and after["changes"][-1]["status"] == "accepted", after and after["changes"]
                ending = today + dt.timedelta(days=7)
                ended = await api.post(
                    f"/packages/{package_id}/end",
                    json={"reason": "needs_met", "effective_date": ending.isoformat()},
                )
                assert ended.status_code == 200, ended.text
        finally:
            assert (await admin.put(f"/providers/{provider_id}/adapter", json=rules)).is_success

    async def all_three():
        found = await records_on_topic(infra, package_id)
        return found if {"placed", "changed", "ended"} <= {r.reason.value for r in found} else None

    on_topic = await wait_for(all_three)
    assert on_topic, "placement, change and ending records on brokerage.service-agreements"
    placed = next(r for r in on_topic if r.reason.value == "placed")
    assert (placed.provider_id, placed.version, placed.supersedes) == (provider_id, 1, None)
    assert placed.hourly_rate == Decimal(view["hourly_rate"])
    assert placed.hours_per_week == Decimal(view["package"]["hours_per_week"])
    # Each agreement's versions form one chain: version n supersedes version n - 1.
    by_id = {r.record_id: r for r in on_topic}
    for record in on_topic:
        if record.version > 1:
            assert by_id[record.supersedes].agreement_id == record.agreement_id
            assert by_id[record.supersedes].version == record.version - 1
    in_force = [r for r in on_topic if r.record_id not in {x.supersedes for x in on_topic}]
    last = max(in_force, key=lambda r: r.start_date)
    assert last.hours_per_week == Decimal(body["hours_per_week"]), "the changed hours"
    assert last.end_date == today + dt.timedelta(days=6), "the day before the first day without care"
    text = " ".join(r.model_dump_json() for r in on_topic)
    assert "person" not in json.loads(on_topic[0].model_dump_json()) and "nhs_number" not in text

    columns = documented_columns()
    assert len(columns) >= 20, columns
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff("demo-finance"), timeout=10) as finance:
        exported = await finance.get("/service-agreements/export", params={"provider_id": provider_id})
        assert exported.status_code == 200, exported.text
        header = next(csv.reader(io.StringIO(exported.text)))
        assert header == columns, "the CSV's columns are the documented ones, in order"
        rows = [r for r in csv.DictReader(io.StringIO(exported.text)) if r["ClientRef"] == package_id]
        assert {r["RecordRef"] for r in rows} == {str(r.record_id) for r in on_topic}
        assert len(rows) == sum(len(part.lines) for r in on_topic for part in r.funding), "a row per payer line"
        for row in rows:
            record = by_id[next(r.record_id for r in on_topic if str(r.record_id) == row["RecordRef"])]
            assert row["AgreementRef"] == str(record.agreement_id)
            assert row["UnitCost"] == f"{record.hourly_rate:.2f}" and row["SupplierRef"] == provider_id
            assert row["AgreementStartDate"] == record.start_date.strftime("%d/%m/%Y")
            assert row["SupersedesRecordRef"] == (str(record.supersedes) if record.supersedes else "")
        week = clock.uk_week_of(today)
        report = await finance.get("/service-agreements/commitments", params={"week": week.isoformat()})
        assert report.status_code == 200, report.text
        assert any(r["provider_id"] == provider_id and Decimal(r["pounds"]) > 0 for r in report.json()["rows"])

        # The reporting service's projection of the same records (decision 0118) says the same for the
        # week, provider by provider and payer by payer, once it has read the topic.
        async with httpx.AsyncClient(
            base_url=ready.url("reporting"), auth=staff("demo-finance"), timeout=10
        ) as reporting:
            one_week = {"from": week.isoformat(), "to": (week + dt.timedelta(days=6)).isoformat()}

            async def agreed():
                ours = (await finance.get("/service-agreements/commitments", params={"week": week.isoformat()})).json()
                theirs = (await reporting.get("/reports/commitments", params=one_week)).json()["weeks"]
                pairs = {(r["provider_id"], r["payer"]): r["pounds"] for r in ours["rows"]}
                projected = {(r["provider_id"], r["payer"]): r["pounds"] for r in theirs[0]["rows"]}
                same_total = Decimal(theirs[0]["total"]) == Decimal(ours["total"])
                return (pairs, same_total) if pairs == projected else None

            same = await wait_for(agreed)
            assert same and same[1], "the projection's weekly commitment is the brokerage's, total included"
            assert any(p == provider_id for p, _ in same[0]), "this test's provider among them"
        refused = await finance.get(
            "/service-agreements/export",
            params={"recorded_from": today.isoformat(), "recorded_to": (today - dt.timedelta(days=3)).isoformat()},
        )
        assert refused.status_code == 422
        assert [e["field"] for e in refused.json()["errors"]] == ["recorded_to"]
        not_monday = await finance.get(
            "/service-agreements/commitments", params={"week": (week + dt.timedelta(days=1)).isoformat()}
        )
        assert not_monday.status_code == 422 and not_monday.json()["errors"][0]["field"] == "week"
    async with httpx.AsyncClient(base_url=ready.url("brokerage"), auth=staff(), timeout=10) as broker:
        assert (await broker.get("/service-agreements/export")).status_code == 403, "a broker is not finance"
