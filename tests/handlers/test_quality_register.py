"""The provider quality and risk register on PostgreSQL, through the providers API in-process
(decision 0103): changes are events with codes only, the reviewer is the token's user, and a CQC
import is all or nothing with a report."""

import datetime as dt
import json
import uuid

import httpx

from services.providers.app import build
from services.runtime import clock
from tests import local_issuer

QUALITY = ("contracts_quality",)
HEADER = "Location ID,Location Name,Location Latest Overall Rating,Publication Date\n"


def client(service, username="demo-quality", roles=QUALITY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://service",
        headers=local_issuer.headers(service.name, username, roles),
    )


async def two_providers(service) -> list[tuple[str, str]]:
    """Two seeded providers with fresh CQC location ids of this test's own: [(provider, location)]."""
    rows = await service.pool.fetch("SELECT provider_id FROM providers ORDER BY provider_id LIMIT 2 OFFSET 5")
    out = []
    async with client(service) as api:
        for r in rows:
            location = f"1-{uuid.uuid4().int % 10**11}"
            answer = await api.put(
                f"/providers/{r['provider_id']}/quality/cqc-location", json={"cqc_location_id": location}
            )
            assert answer.status_code == 200, answer.text
            reset = await api.put(
                f"/providers/{r['provider_id']}/quality/cqc",
                json={"rating": "good", "inspected_on": "2025-06-01", "correction": True, "note": "test's own start"},
            )
            assert reset.status_code == 200, reset.text
            out.append((r["provider_id"], location))
    return out


async def outbox_since(service, seq: int) -> list[dict]:
    rows = await service.pool.fetch("SELECT type, payload FROM outbox WHERE seq > $1 ORDER BY seq", seq)
    return [{"type": r["type"], **json.loads(r["payload"])} for r in rows]


async def last_seq(service) -> int:
    return await service.pool.fetchval("SELECT coalesce(max(seq), 0) FROM outbox")


async def test_a_cqc_import_changes_the_matched_providers_and_reports_it(in_memory):
    service, _ = await in_memory(build, "providers")
    (first, loc1), (second, loc2) = await two_providers(service)
    before = await last_seq(service)
    csv = (
        "CQC care directory\n\n" + HEADER + f"{loc1},First,Requires improvement,03/10/2026\n"
        f"{loc2},Second,Good,01/06/2025\n"
        "1-424242424242,Not ours,Inadequate,01/01/2026\n"
    )
    async with client(service) as api:
        answer = await api.post(
            "/quality/cqc-imports",
            content=csv.encode(),
            headers={"Content-Type": "text/csv"},
            params={"file_name": "x.csv"},
        )
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["applied"] is True and report["refused"] == [] and report["not_on_the_framework"] == 1
        assert [(c["provider_id"], c["cqc_rating_was"], c["cqc_rating"]) for c in report["changed"]] == [
            (first, "good", "requires_improvement")
        ]
        assert report["unchanged"] == [second]
        register = (await api.get(f"/providers/{first}/quality")).json()
        assert register["cqc_rating"] == "requires_improvement" and register["cqc_inspected_on"] == "2026-10-03"
        assert register["cqc_source"] == "cqc_import"
        assert "CQC rating Requires improvement (inspected 2026-10-03): 35 points x 0.6" in register["score_explained"]
        again = await api.get(f"/quality/cqc-imports/{report['import_id']}")
        assert again.status_code == 200 and again.json()["changed"] == report["changed"]
    events = await outbox_since(service, before)
    assert [e["type"] for e in events] == ["ProviderUpdated", "ProviderQualityRecorded"]
    updated, recorded = events
    assert updated["profile"]["cqc_rating"] == "requires_improvement"
    assert recorded["change"] == "cqc_rating" and recorded["recorded_by"] == "demo-quality"
    assert recorded["quality_register"]["cqc_inspected_on"] == "2026-10-03"


async def test_a_malformed_cqc_file_changes_nothing_and_reports_the_refused_rows(in_memory):
    service, _ = await in_memory(build, "providers")
    (first, loc1), (second, loc2) = await two_providers(service)
    before = await last_seq(service)
    csv = (
        HEADER + f"{loc1},First,Requires improvement,03/10/2026\n"  # fine on its own
        f"{loc2},Second,Pretty good,01/06/2026\n"  # not a rating
        "not-an-id,Third,Good,01/06/2026\n"
        f"{loc1},First again,Inadequate,03/10/2026\n"  # the same location rated differently
    )
    async with client(service) as api:
        answer = await api.post("/quality/cqc-imports", content=csv.encode(), headers={"Content-Type": "text/csv"})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["applied"] is False
        assert sorted((r["line"], r["field"]) for r in report["refused"]) == [
            (2, "Location ID"),
            (3, "Location Latest Overall Rating"),
            (4, "Location ID"),
            (5, "Location ID"),
        ]
        for provider in (first, second):
            register = (await api.get(f"/providers/{provider}/quality")).json()
            assert (register["cqc_rating"], register["cqc_inspected_on"]) == ("good", "2025-06-01")
        not_csv = await api.post(
            "/quality/cqc-imports", content=b"just,some\ncells,here\n", headers={"Content-Type": "text/csv"}
        )
        assert not_csv.status_code == 422 and not_csv.json()["errors"][0]["field"] == "file"
    assert await outbox_since(service, before) == []  # no event: nothing changed


async def test_a_risk_review_names_the_reviewer_from_the_token_and_keeps_the_note_off_the_event(in_memory):
    service, _ = await in_memory(build, "providers")
    [(provider, _)] = (await two_providers(service))[:1]
    before = await last_seq(service)
    async with client(service, username="carol.quality") as api:
        answer = await api.post(
            f"/providers/{provider}/quality/risk-reviews",
            json={"local_risk": "high", "reason": "missed_or_late_visits", "note": "Mrs Smith missed 3 calls"},
        )
        assert answer.status_code == 200, answer.text
        register = (await api.get(f"/providers/{provider}/quality")).json()
    assert register["local_risk"] == "high" and register["local_risk_reviewed_by"] == "carol.quality"
    assert register["local_risk_reason"] == "missed_or_late_visits"
    assert register["changes"][0]["note"] == "Mrs Smith missed 3 calls"
    events = await outbox_since(service, before)
    assert [e["type"] for e in events] == ["ProviderUpdated", "ProviderQualityRecorded"]
    assert "Smith" not in json.dumps(events)
    assert events[1]["risk_reason"] == "missed_or_late_visits" and events[1]["recorded_by"] == "carol.quality"


async def test_complaints_and_plans_are_coded_and_counted_and_bad_input_names_the_field(in_memory):
    service, _ = await in_memory(build, "providers")
    [(provider, _)] = (await two_providers(service))[:1]
    async with client(service) as api:
        complaint = await api.post(
            f"/providers/{provider}/quality/complaints",
            json={"theme": "missed_visit", "received_on": "2026-11-20", "summary": "words stay here"},
        )
        assert complaint.status_code == 201, complaint.text
        assert complaint.json()["open_complaints"] >= 1
        due = (dt.date.today() + dt.timedelta(days=60)).isoformat()
        plan = await api.post(f"/providers/{provider}/quality/plans", json={"area": "staffing", "due_on": due})
        assert plan.status_code == 201 and plan.json()["open_improvement_plans"] >= 1
        bad_theme = await api.post(
            f"/providers/{provider}/quality/complaints", json={"theme": "rude", "received_on": "2026-11-20"}
        )
        assert bad_theme.status_code == 422 and bad_theme.json()["errors"][0]["field"] == "theme"
        before = (await api.get(f"/providers/{provider}/quality")).json()["open_complaints"]
        tomorrow = (clock.uk_today() + dt.timedelta(days=1)).isoformat()
        ahead = await api.post(
            f"/providers/{provider}/quality/complaints", json={"theme": "missed_visit", "received_on": tomorrow}
        )
        assert ahead.status_code == 422 and ahead.json()["errors"][0]["field"] == "received_on", ahead.text
        assert (await api.get(f"/providers/{provider}/quality")).json()["open_complaints"] == before
        undated = await api.put(f"/providers/{provider}/quality/cqc", json={"rating": "good"})
        assert undated.status_code == 422 and undated.json()["errors"][0]["field"] == "inspected_on"
        unrated = await api.put(
            f"/providers/{provider}/quality/cqc",
            json={"rating": "not_yet_rated", "correction": True, "note": "the CQC suspended the rating"},
        )
        assert unrated.status_code == 200 and unrated.json()["cqc_rating"] == "not_yet_rated"
        assert unrated.json()["cqc_inspected_on"] is None  # the policy: not yet rated may have no date
        register = (await api.get(f"/providers/{provider}/quality")).json()
        [opened] = [p for p in register["improvement_plans"] if p["closed_on"] is None][:1]
        closed = await api.post(f"/providers/{provider}/quality/plans/{opened['plan_id']}/close", json={"met": True})
        assert closed.status_code == 200
    async with client(service, username="demo-broker", roles=("broker",)) as broker:
        refused = await broker.post(
            f"/providers/{provider}/quality/complaints", json={"theme": "missed_visit", "received_on": "2026-11-20"}
        )
        assert refused.status_code == 403
        summary = await broker.get("/quality/register")
        assert summary.status_code == 200 and any(r["provider_id"] == provider for r in summary.json())


async def test_the_registers_dates_must_lie_where_such_a_date_can_be(in_memory):
    """Decision 0157: a complaint received in 1901, a plan due in 2999 or a CQC rating published
    before the CQC rated anyone were each stored; each is a 422 naming its field, or a refused
    row in an import, and nothing changes."""
    service, _ = await in_memory(build, "providers")
    (provider, location), _ = await two_providers(service)
    today = clock.uk_today()
    before = await last_seq(service)
    async with client(service) as api:
        sent = [
            ("post", "complaints", {"theme": "missed_visit", "received_on": "1901-01-01"}, "received_on", "6 years"),
            ("post", "plans", {"area": "staffing", "due_on": "2999-01-01"}, "due_on", "a year ahead"),
            ("post", "plans", {"area": "staffing", "due_on": str(today + dt.timedelta(days=367))}, "due_on", "a year"),
            ("put", "cqc", {"rating": "good", "inspected_on": "2010-06-01"}, "inspected_on", "first ratings"),
        ]
        for method, path, body, field, words in sent:
            answer = await api.request(method.upper(), f"/providers/{provider}/quality/{path}", json=body)
            assert answer.status_code == 422, answer.text
            assert answer.json()["errors"][0]["field"] == field and words in answer.json()["detail"], answer.text
        old = await api.post(
            "/quality/cqc-imports",
            content=(HEADER + f"{location},First,Good,01/06/2010\n").encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert old.status_code == 200 and old.json()["applied"] is False, old.text
        assert [(r["line"], r["field"]) for r in old.json()["refused"]] == [(2, "Publication Date")]
        edge = (today - dt.timedelta(days=6 * 365)).isoformat()  # within 6 years, whatever the leap days
        kept = await api.post(
            f"/providers/{provider}/quality/complaints", json={"theme": "missed_visit", "received_on": edge}
        )
        assert kept.status_code == 201, kept.text
        # Found by an attack: a complaint named a package nobody had offered the provider.
        stranger = await api.post(
            f"/providers/{provider}/quality/complaints",
            json={"theme": "missed_visit", "received_on": str(today), "package_id": str(uuid.uuid4())},
        )
        assert stranger.status_code == 422 and stranger.json()["errors"][0]["field"] == "package_id", stranger.text
        theirs = uuid.uuid4()
        await service.pool.execute(
            "INSERT INTO placements (package_id, offer_round, provider_id, hours_per_week, hourly_rate, start_date,"
            " placed_at) VALUES ($1, 1, $2, 10, 24.50, $3, now())",
            theirs,
            provider,
            today,
        )
        about_theirs = await api.post(
            f"/providers/{provider}/quality/complaints",
            json={"theme": "missed_visit", "received_on": str(today), "package_id": str(theirs)},
        )
        assert about_theirs.status_code == 201, about_theirs.text
    assert len(await outbox_since(service, before)) == 2  # the two complaints kept; nothing else changed


async def test_a_rating_older_than_the_one_held_is_refused_unless_a_correction_with_a_note(in_memory):
    """As the CQC import refuses a row older than the rating held, so does the hand-entered rating
    (409 ``older-than-held``): an old letter cannot undo a newer rating. A correction may, with a
    note saying why, and the note stays in the register (decision 0157)."""
    service, _ = await in_memory(build, "providers")
    (provider, location), _ = await two_providers(service)  # each rated good, published 2025-06-01
    before = await last_seq(service)
    async with client(service) as api:
        older = {"rating": "inadequate", "inspected_on": "2024-01-10"}
        refused = await api.put(f"/providers/{provider}/quality/cqc", json=older)
        assert refused.status_code == 409 and refused.json()["code"] == "older-than-held", refused.text
        assert refused.json()["errors"][0]["field"] == "inspected_on" and "2025-06-01" in refused.json()["detail"]
        unexplained = await api.put(f"/providers/{provider}/quality/cqc", json=older | {"correction": True})
        assert unexplained.status_code == 422 and unexplained.json()["errors"][0]["field"] == "note"
        assert await outbox_since(service, before) == []
        corrected = await api.put(
            f"/providers/{provider}/quality/cqc",
            json=older | {"correction": True, "note": "the 2025 rating was withdrawn on appeal"},
        )
        assert corrected.status_code == 200, corrected.text
        assert (corrected.json()["cqc_rating"], corrected.json()["cqc_inspected_on"]) == ("inadequate", "2024-01-10")
        newer = await api.put(
            f"/providers/{provider}/quality/cqc", json={"rating": "good", "inspected_on": "2026-02-01"}
        )
        assert newer.status_code == 200, newer.text
        # Found by an attack: "not yet rated" with no date cleared the held date, and then any
        # older rating was taken. An undated rating over a dated one is a correction too.
        cleared = await api.put(f"/providers/{provider}/quality/cqc", json={"rating": "not_yet_rated"})
        assert cleared.status_code == 409 and cleared.json()["code"] == "older-than-held", cleared.text
        undated_row = await api.post(
            "/quality/cqc-imports",
            content=(HEADER + f"{location},First,Not yet rated,\n").encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert undated_row.json()["applied"] is False, undated_row.text
        assert [(r["line"], r["field"]) for r in undated_row.json()["refused"]] == [(2, "Publication Date")]
        withdrawn = await api.put(
            f"/providers/{provider}/quality/cqc",
            json={"rating": "not_yet_rated", "correction": True, "note": "the CQC withdrew the rating"},
        )
        assert withdrawn.status_code == 200 and withdrawn.json()["cqc_inspected_on"] is None, withdrawn.text
        reregistered = await api.put(
            f"/providers/{provider}/quality/cqc", json={"rating": "good", "inspected_on": "2026-03-01"}
        )
        assert reregistered.status_code == 200, reregistered.text
        # Found by a second attack: a new location id exempted the rating, and the id could be put back.
        moved = f"1-9{uuid.uuid4().int % 10**10}"
        fresh = await api.put(
            f"/providers/{provider}/quality/cqc", json={"rating": "not_yet_rated", "cqc_location_id": moved}
        )
        assert fresh.status_code == 409 and fresh.json()["code"] == "older-than-held", fresh.text
        padded = await api.put(f"/providers/{provider}/quality/cqc-location", json={"cqc_location_id": "1-0101"})
        assert padded.status_code == 422 and padded.json()["errors"][0]["field"] == "cqc_location_id"
        other_digits = await api.post(
            "/quality/cqc-imports",
            content=(HEADER + f"{location},First,Good,1\uff12/03/\u0662\u0660\u0662\u0666\n").encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert [(r["line"], r["field"]) for r in other_digits.json()["refused"]] == [(2, "Publication Date")]


async def test_a_refused_rows_control_characters_and_a_hidden_file_name_do_not_reach_the_report(in_memory):
    """Found by an attack: a refused row whose Location ID held a NUL stopped the import's report
    being stored (a 422 naming nothing), and a file name with U+202E was stored and shown."""
    service, _ = await in_memory(build, "providers")
    async with client(service) as api:
        answer = await api.post(
            "/quality/cqc-imports",
            content=(HEADER + "1-12\x0034,Somewhere,Good,01/06/2026\n").encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert answer.status_code == 200, answer.text
        [refused] = answer.json()["refused"]
        assert refused["field"] == "Location ID" and "\x00" not in json.dumps(refused)
        hidden = await api.post(
            "/quality/cqc-imports",
            params={"file_name": "evil\u202evsc.csv"},
            content=HEADER.encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert hidden.status_code == 422 and hidden.json()["errors"][0]["field"] == "file_name", hidden.text
