"""The brokerage team, operations and admins at work in the console, in Chromium."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from decimal import Decimal

import asyncpg
import httpx
import pytest

from tests.support import staff

pytestmark = [pytest.mark.infra, pytest.mark.browser]


def roomiest_zone(stack, band: str = "urban") -> tuple[str, str]:
    """A zone (and one of its postcode districts) whose urban providers have the most free hours:
    earlier test packages used up much of the synthetic market, and this one must be placeable."""
    providers = httpx.get(f"{stack.url('providers')}/providers", timeout=10, auth=staff()).json()
    free: dict[str, Decimal] = {}
    for p in providers:
        if (
            p["status"] == "active"
            and p["cqc_rating"] != "inadequate"
            and band in p["bands"]
            and "personal_care" in p["skills"]
        ):
            room = Decimal(p["weekly_capacity_hours"]) - Decimal(p["committed_hours"]) - Decimal(p["held_hours"])
            for zone in p["zones"]:
                free[zone] = free.get(zone, Decimal(0)) + max(room, Decimal(0))
    zones = {
        z["id"]: z for z in httpx.get(f"{stack.url('brokerage')}/reference/zones", timeout=10, auth=staff()).json()
    }
    best = max((z for z in free if z in zones and zones[z]["postcode_districts"]), key=lambda z: free[z])
    return best, zones[best]["postcode_districts"][0]


async def fill_package(page, *, zone: str, district: str, hours: str = "7", calls: str = "2") -> None:
    """The new-package form, answered well (a 7-hour urban community package)."""
    start = dt.date.today() + dt.timedelta(days=3)
    await page.select_option("#zone", zone)
    await page.fill("#postcode_district", district)
    await page.check("#band")  # urban
    await page.check("#urgency-3")  # community
    await page.fill("#calls_per_day", calls)
    await page.fill("#minutes_per_call", "30")
    await page.check("#carers_per_call")
    await page.fill("#days_per_week", "7")
    await page.fill("#hours_per_week", hours)
    await page.check("#needs")  # personal care
    for part, value in (("day", start.day), ("month", start.month), ("year", start.year)):
        await page.fill(f"#start_date-{part}", str(value))
    await page.fill("#person_full_name", "Ada Example")
    await page.fill("#person_address", "1 Market Place")
    await page.fill("#person_postcode", f"{district} 1AA")
    await page.fill("#person_nhs_number", "999 876 5439")


async def test_a_broker_requests_a_package_sees_it_placed_with_its_explanation_and_ops_see_its_events_live(
    stack, console, pages
):
    ops = await pages.signed_in("demo-ops")
    assert ops.url.endswith("/ops"), "operations start at their overview"
    await ops.goto(f"{console}/ops/stream")
    await ops.wait_for_selector("#stream-status[data-state=live]", timeout=30_000)

    broker = await pages.signed_in("demo-broker")
    assert broker.url.endswith("/board")
    await pages.check(broker, "board-before")
    await pages.narrow(broker, "board-before")
    await broker.goto(f"{console}/packages/new")
    await pages.check(broker, "package-form")
    await pages.narrow(broker, "package-form")
    zone, district = roomiest_zone(stack)
    await fill_package(broker, zone=zone, district=district)
    await broker.click("button:has-text('Continue')")
    # Check your answers (decision record 0132): every answer in words, nothing sent yet.
    assert await broker.inner_text("h1") == "Check your answers before sending the request"
    assert await broker.inner_text("#answer-person_full_name") == "Ada Example"
    assert await broker.inner_text("#answer-carers_per_call") == "One carer"
    await pages.check(broker, "package-check")
    await pages.narrow(broker, "package-check")
    await broker.click("#send-request")
    await broker.wait_for_url(re.compile(r"/packages/[0-9a-f-]{36}\?created=1"))
    created = re.search(r"/packages/([0-9a-f-]{36})", broker.url)
    assert created is not None
    package_id = created.group(1)

    for _ in range(60):  # the automatic adapters answer within seconds; bounded
        if (await broker.inner_text("#package-status")).strip() == "placed":
            break
        await asyncio.sleep(1)
        await broker.reload()
    assert (await broker.inner_text("#package-status")).strip() == "placed"
    explanation = await broker.inner_text("#explanation")
    assert "Placed with" in explanation and "ranked by quality rating" in explanation
    assert "Ada Example" in await broker.inner_text("#person")  # the broker sees the person...
    log = httpx.get(
        f"{stack.url('brokerage')}/packages/{package_id}/disclosures", timeout=10, auth=staff("demo-manager")
    ).json()
    assert ("staff", "demo-broker") in {(d["reader"], d["staff_user"]) for d in log}  # ...and the read is on record
    assert "placed" in await broker.inner_text("#timeline")
    await pages.check(broker, "package-placed")
    await pages.narrow(broker, "package-placed")

    # The work queue lists open work, a page at a time: a placed package is found by its reference.
    await broker.goto(f"{console}/board?status=all&q={package_id}")
    row = broker.locator(f"tr[data-package-id='{package_id}']")
    assert "placed" in await row.inner_text()
    await pages.check(broker, "board")

    # Operations saw the package's journey as it happened.
    for event_type in ("PackageRequested", "OfferMade", "BidSubmitted", "PackagePlaced", "PlacementConfirmed"):
        await ops.wait_for_selector(
            f"#stream-rows tr[data-event-type={event_type}][data-package-id='{package_id}']", timeout=30_000
        )
    await pages.check(ops, "live-events")
    await pages.narrow(ops, "live-events")
    # Each row links to its package's page.
    link = ops.locator(f"#stream-rows tr[data-package-id='{package_id}'] a[href='/packages/{package_id}']")
    assert await link.count() >= 1

    # ...and may follow the package on the board, but never see the person or act on it.
    await ops.goto(f"{console}/packages/{package_id}")
    assert await ops.locator("#person").count() == 0 and "Ada Example" not in await ops.content()
    assert await ops.locator("#actions").count() == 0
    for path in ("/ops/lag", "/ops/dead-letters", "/ops/notifications", "/ops/kpis"):  # KPIs last: read below
        await ops.goto(f"{console}{path}")
        await pages.check(ops, path.split("/")[-1])
        await pages.narrow(ops, path.split("/")[-1])
    assert int(await ops.inner_text("#kpi-counts .console-card:nth-child(2) .console-card__value")) >= 1  # placed

    # The broker records the start; the page says so.
    await broker.goto(f"{console}/packages/{package_id}")
    await broker.click("button:has-text('Record the start')")
    await broker.wait_for_url(re.compile(r"done=start"))
    assert (await broker.inner_text("#package-status")).strip() == "started"

    # Later the provider hands it back with notice: recorded here, the package is offered again.
    notice = dt.date.today() + dt.timedelta(days=14)
    for part, value in (("day", notice.day), ("month", notice.month), ("year", notice.year)):
        await broker.fill(f"#notice_ends_on-{part}", str(value))
    await broker.select_option("#hand-back-reason", "staff_shortage")
    await broker.fill("#hand-back-reason-text", "two carers left in March")
    await broker.click("button:has-text('Record the hand-back')")
    await broker.wait_for_url(re.compile(r"done=hand-back"))
    assert "handed back" in await broker.inner_text("#timeline")
    assert (await broker.inner_text("#package-status")).strip() != "started"


async def summary_of(page) -> list[tuple[str, str]]:
    """The error summary's items in order: (the id it links to, its words)."""
    links = page.locator(".govuk-error-summary__list a")
    return [
        ((await links.nth(i).get_attribute("href") or "").removeprefix("#"), (await links.nth(i).inner_text()).strip())
        for i in range(await links.count())
    ]


async def test_every_problem_on_the_request_form_is_listed_at_once_in_plain_words_linked_to_its_field(
    stack, console, pages
):
    """Issue 19: an empty postcode, a bad NHS number and a wrong date took three submits, in the
    API's words. One submit now lists them all, in the page's order, each linked to its field."""
    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/packages/new")
    zone, district = roomiest_zone(stack)
    await fill_package(broker, zone=zone, district=district, calls="two", hours="14")
    await broker.fill("#person_postcode", "")
    await broker.fill("#person_nhs_number", "999 876 5438")  # a wrong check digit
    await broker.fill("#start_date-month", "13")
    await broker.click("button:has-text('Continue')")
    assert await summary_of(broker) == [
        ("calls_per_day", "Calls a day must be a whole number, like 2"),
        ("start_date-day", "Start date must be a real date"),
        ("person_postcode", "Enter the person's postcode"),
        ("person_nhs_number", "Enter a real NHS number: check the 10 digits"),
    ]
    assert await broker.evaluate("document.activeElement.classList.contains('govuk-error-summary')")
    assert (await broker.title()).startswith("Error: ")
    assert "calls_per_day-error" in await broker.get_attribute("#calls_per_day", "aria-describedby")
    assert await broker.input_value("#person_address") == "1 Market Place"  # answers are kept
    assert await broker.input_value("#person_nhs_number") == "999 876 5438"
    await pages.check(broker, "package-form-errors")
    await pages.narrow(broker, "package-form-errors")

    # Fixed those: the hours against the visits, in words, and the summary takes you to the field.
    await broker.fill("#calls_per_day", "2")
    await broker.fill("#person_postcode", f"{district} 1AA")
    await broker.fill("#person_nhs_number", "999 876 5439")
    await broker.fill("#start_date-month", str((dt.date.today() + dt.timedelta(days=3)).month))
    await broker.click("button:has-text('Continue')")
    [(target, words)] = await summary_of(broker)
    assert target == "hours_per_week"
    assert (
        words
        == "Hours per week must match the visits: 2 calls a day of 30 minutes with 1 carer, 7 days a week is 7 hours"
    )
    page_text = await broker.inner_text("main")
    for system_words in ("String should", "Input should", "hours_per_week", "does not match the visit pattern"):
        assert system_words not in page_text
    await broker.locator(".govuk-error-summary a[href='#hours_per_week']").click()
    assert await broker.evaluate("document.activeElement.id") == "hours_per_week"

    await broker.fill("#hours_per_week", "7")
    await broker.fill("#person_postcode", "SW1A 1AA")  # a real postcode, another district
    await broker.click("button:has-text('Continue')")
    assert "is not in " + district in await broker.inner_text("#person_postcode-error")
    assert "/packages/new" in broker.url


async def test_a_request_is_checked_before_it_is_sent_and_a_change_keeps_every_other_answer(stack, console, pages):
    """Decision record 0132 (GOV.UK's check your answers): the form's answers are listed in words,
    each with a Change button back to its question; nothing reaches the brokerage until "Send
    request"; a Change keeps every other answer; answers refused when sent come back on the form as
    an error summary, kept. Axe-clean at 1280 and 390 px, no sideways scroll."""
    name = "Checked " + "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:8]).capitalize()

    def found() -> int:
        answer = httpx.get(
            f"{stack.url('brokerage')}/packages", params={"q": name}, timeout=10, auth=staff("demo-broker")
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["total"]

    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/packages/new")
    zone, district = roomiest_zone(stack)
    await fill_package(broker, zone=zone, district=district)
    await broker.fill("#person_full_name", name)
    await broker.click("button:has-text('Continue')")
    assert await broker.inner_text("h1") == "Check your answers before sending the request"
    answers = dict(
        zip(
            await broker.eval_on_selector_all("[data-answer]", "rows => rows.map(r => r.dataset.answer)"),
            await broker.eval_on_selector_all(".govuk-summary-list__value", "cells => cells.map(c => c.innerText)"),
            strict=True,
        )
    )
    start = dt.date.today() + dt.timedelta(days=3)
    assert answers["person_full_name"] == name and answers["person_address"] == "1 Market Place"
    assert answers["urgency"] == "Community" and answers["needs"] == "Personal care"
    assert answers["start_date"] == f"{start.day} {start:%B %Y}"
    assert answers["person_phone"] == "Not given"
    assert "discharge_hospital" not in answers, "no hospital discharge section without that urgency"
    assert found() == 0, "nothing is sent before the answers are checked"
    await pages.check(broker, "package-check-answers")
    await pages.narrow(broker, "package-check-answers")

    # Change: back to the question, every answer kept.
    await broker.click("[data-answer=hours_per_week] button:has-text('Change')")
    assert broker.url.endswith("/packages/new#hours_per_week")
    assert await broker.input_value("#hours_per_week") == "7"
    assert await broker.input_value("#person_full_name") == name
    assert await broker.input_value("#person_nhs_number") == "999 876 5439"
    assert await broker.is_checked("#needs") and await broker.is_checked("#urgency-3")
    assert await broker.input_value("#zone") == zone
    assert await broker.locator(".govuk-error-summary").count() == 0, "a change is not an error"
    await broker.fill("#calls_per_day", "3")
    await broker.fill("#hours_per_week", "10.5")
    await broker.click("button:has-text('Continue')")
    assert await broker.inner_text("#answer-hours_per_week") == "10.5"
    assert await broker.inner_text("#answer-calls_per_day") == "3"
    assert found() == 0

    # An answer refused when sent (here one altered in the page) comes back on the form, kept.
    await broker.eval_on_selector("#check-answers input[name=person_nhs_number]", "e => e.value = '999 876 5438'")
    await broker.click("#send-request")
    assert await summary_of(broker) == [("person_nhs_number", "Enter a real NHS number: check the 10 digits")]
    assert await broker.input_value("#person_full_name") == name
    assert found() == 0
    await broker.fill("#person_nhs_number", "999 876 5439")
    await broker.click("button:has-text('Continue')")
    await broker.click("#send-request")
    await broker.wait_for_url(re.compile(r"/packages/[0-9a-f-]{36}\?created=1"))
    assert found() == 1
    # The sending address opened again holds no answers: the empty form.
    await broker.goto(f"{console}/packages/new/send")
    assert broker.url.endswith("/packages/new") and await broker.input_value("#person_full_name") == ""


async def test_the_discharge_hub_requests_a_discharge_through_the_form_and_other_pathways_are_refused_by_name(
    stack, console, pages
):
    """Decision records 0097 and 0120: the request form carries the Discharge Hub's codes. The urgency
    hospital_discharge without them, a ward not of the hospital, or pathway 3 (a care home: not home
    care) are listed at once, each linked to its question; answered well, the package is requested
    with its discharge, shown on its page. Axe-clean at 1280 and 390 px, errors and all."""
    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/packages/new")
    zone, district = roomiest_zone(stack)
    await fill_package(broker, zone=zone, district=district)
    await broker.check("#urgency")  # hospital discharge
    today = dt.date.today()
    for part, value in (("day", today.day), ("month", today.month), ("year", today.year)):
        await broker.fill(f"#start_date-{part}", str(value))
    await broker.click("button:has-text('Continue')")
    assert await summary_of(broker) == [
        ("discharge_hospital", "Select the hospital"),
        ("discharge_ward", "Enter the ward code"),
        ("discharge_pathway", "Select the discharge pathway"),
        ("discharge_medically_fit_on-day", "Enter the date the person is medically fit"),
    ]
    await pages.check(broker, "package-form-discharge-errors")
    await pages.narrow(broker, "package-form-discharge-errors")

    await broker.select_option("#discharge_hospital", "uhl-lri")
    await broker.fill("#discharge_ward", "W99")
    await broker.locator("input[name=discharge_pathway][value='3']").check()
    for part, value in (("day", today.day), ("month", today.month), ("year", today.year)):
        await broker.fill(f"#discharge_medically_fit_on-{part}", str(value))
    await broker.click("button:has-text('Continue')")
    problems = dict(await summary_of(broker))
    assert problems.keys() == {"discharge_ward", "discharge_pathway"}
    assert "W99 is not a ward of Leicester Royal Infirmary" in problems["discharge_ward"]
    assert problems["discharge_pathway"].startswith("Pathway 3 is a care home, not care at home: ")
    assert await broker.input_value("#discharge_ward") == "W99"  # answers are kept

    await broker.fill("#discharge_ward", "w17")
    await broker.locator("input[name=discharge_pathway][value='1']").check()
    await broker.fill("#discharge_nhs_funded_weeks", "2")
    await broker.click("button:has-text('Continue')")
    assert await broker.inner_text("#answer-discharge_hospital") == "Leicester Royal Infirmary"
    assert await broker.inner_text("#answer-discharge_nhs_funded_weeks") == "2"
    await broker.click("#send-request")
    await broker.wait_for_url(re.compile(r"/packages/[0-9a-f-]{36}\?created=1"))
    shown = await broker.inner_text("#discharge-summary")
    assert "W17" in shown and ("uhl-lri" in shown or "Leicester Royal Infirmary" in shown)


async def test_the_package_form_can_be_completed_with_the_keyboard_alone(console, pages):
    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/packages/new")
    reached = []
    for _ in range(80):  # bounded: the form has fewer stops than this
        await broker.keyboard.press("Tab")
        reached.append(await broker.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
        if reached[-1] == "Continue":
            break
    for field in (
        "zone",
        "postcode_district",
        "band",
        "urgency",
        "calls_per_day",
        "hours_per_week",
        "needs",
        "start_date-day",
        "start_date-year",
        "person_full_name",
        "person_nhs_number",
        "person_care_notes",
    ):
        assert field in reached, f"{field} cannot be reached with Tab"
    assert reached[-1] == "Continue"


async def test_a_broker_cannot_reach_operations_or_admin_pages(console, pages):
    broker = await pages.signed_in("demo-broker")
    for path in (
        "/ops",
        "/ops/stream",
        "/ops/lag",
        "/ops/dead-letters",
        "/ops/notifications",
        "/ops/kpis",
        "/admin/staff",
    ):
        response = await broker.goto(f"{console}{path}")
        assert response.status == 403, path
        assert "You do not have access" in await broker.inner_text("h1")
    response = await broker.request.get(f"{console}/ops/stream/events")
    assert response.status == 403
    await pages.check(broker, "forbidden")
    response = await broker.goto(f"{console}/packages/not-a-package")
    assert response.status == 404 and "Page not found" in await broker.inner_text("h1")
    # Any address that is no page: GOV.UK's page, with the menu, never the framework's JSON.
    response = await broker.goto(f"{console}/no-such-page/at-all")
    assert response.status == 404 and "Page not found" in await broker.inner_text("h1")
    assert "If you typed the web address, check it is correct." in await broker.inner_text("main")
    assert "Board" in await broker.inner_text("#navigation")
    await pages.check(broker, "not-found")
    await pages.narrow(broker, "not-found")
    # The menu offers only what the role may use.
    menu = await broker.inner_text("#navigation")
    assert "Board" in menu and "Live events" not in menu and "Staff accounts" not in menu


async def test_pages_need_a_session_and_signing_out_ends_it(console, pages):
    page = await pages.new()
    await page.goto(f"{console}/board")
    assert "/sign-in?next=/board" in page.url
    await pages.check(page, "sign-in")
    await page.click("#sign-in-oidc")
    await page.fill("#username", "demo-broker")
    await page.fill("#password", "not the password")
    await page.click("#kc-login")
    await page.wait_for_selector("#kc-login")  # still at the identity provider, which says why
    assert page.url.startswith(pages.idp_issuer)
    await page.fill("#password", pages.idp_password)
    await page.click("#kc-login")
    await page.wait_for_url(f"{console}/**")
    assert page.url.endswith("/board")  # back where they were going
    await page.click("button:has-text('Sign out')")
    await page.wait_for_url(f"{console}/sign-in")
    await page.goto(f"{console}/board")
    assert "/sign-in" in page.url


async def test_a_form_without_the_sessions_csrf_token_is_refused(console, pages):
    broker = await pages.signed_in("demo-broker")
    before = await broker.request.get(f"{console}/board?fragment=rows")
    forged = await broker.request.post(f"{console}/packages/new", form={"zone": "melton", "csrf_token": "guessed"})
    assert forged.status == 403 and "did not come from this console" in await forged.text()
    odd = await broker.request.post(f"{console}/packages/new", form={"zone": "melton", "csrf_token": "jeton-falsifié"})
    assert odd.status == 403
    no_token = await broker.request.post(f"{console}/sign-out", form={})
    assert no_token.status == 403
    after = await broker.request.get(f"{console}/board?fragment=rows")
    # The same packages, still signed in. The rows' wait clocks move on, so compare ids, not the text.
    assert after.status == 200 and "/sign-in" not in after.url
    assert _board_package_ids(await after.text()) == _board_package_ids(await before.text())


def _board_package_ids(rows_html: str) -> set[str]:
    """The package ids of a board rows fragment (its ``data-package-id`` attributes)."""
    return set(re.findall(r'data-package-id="([0-9a-f-]{36})"', rows_html))


async def test_an_admin_adds_a_staff_account_that_can_then_sign_in(local_console, pages):
    """Only where the console's own accounts are on (an installation without an identity provider)."""
    admin = await pages.signed_in_locally(local_console, "admin1")
    assert admin.url.endswith("/admin/staff")
    # Nothing answered: every problem at once, in the form's order, each linked to its question.
    await admin.fill("#display_name", "Second Broker")
    await admin.click("button:has-text('Add the account')")
    assert await summary_of(admin) == [
        ("username", "Enter a username"),
        ("role", "Select a role"),
        ("password", "Enter a first password"),
    ]
    assert await admin.input_value("#display_name") == "Second Broker"
    await pages.check(admin, "staff-accounts-errors")
    await pages.narrow(admin, "staff-accounts-errors")
    response = await admin.goto(f"{local_console}/admin/staff?added=Hello+from+a+link")
    assert "Hello from a link" not in await admin.inner_text("main")
    await admin.fill("#username", "broker2")
    await admin.fill("#display_name", "Second Broker")
    await admin.check("#role")
    await admin.fill("#password", "short")
    await admin.click("button:has-text('Add the account')")
    assert "at least 12 characters" in await admin.inner_text("#password-error")
    await admin.fill("#password", "another long passphrase")
    await admin.click("button:has-text('Add the account')")
    assert "Account broker2 added" in await admin.inner_text(".govuk-notification-banner")
    await pages.check(admin, "staff-accounts")
    broker2 = await pages.signed_in_locally(local_console, "broker2", "another long passphrase")
    assert broker2.url.endswith("/board")
    # An admin follows the work but sees no one's personal details and takes no package action.
    response = await admin.goto(f"{local_console}/packages/new")
    assert response.status == 403


OPEN = ["unplaced", "awaiting_approval", "offered", "requested", "paused"]  # the work queue


async def test_a_refused_action_says_why_and_an_unplaced_package_can_be_offered_again(stack, console, pages):
    # 56 carer hours a week, double-handed: more than any automatic adapter takes on (42 h), so
    # every tier declines and the package joins the unplaced queue.
    zone, district = roomiest_zone(stack)
    body = {
        "zone": zone,
        "band": "urban",
        "postcode_district": district,
        "hours_per_week": "56",
        "visits": {"calls_per_day": 4, "minutes_per_call": 60, "carers_per_call": 2, "days_per_week": 7},
        "needs": ["personal_care"],
        "urgency": "community",
        "start_date": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
        "person": {
            "full_name": "Bea Example",
            "address": "2 Market Place",
            "postcode": f"{district} 1AB",
            "nhs_number": "9998765439",
        },
    }
    created = httpx.post(f"{stack.url('brokerage')}/packages", json=body, timeout=10, auth=staff())
    assert created.status_code == 201, created.text
    package_id = created.json()["package_id"]
    for _ in range(120):
        status = httpx.get(f"{stack.url('brokerage')}/packages/{package_id}", timeout=10, auth=staff()).json()["status"]
        if status == "unplaced":
            break
        await asyncio.sleep(0.5)
    assert status == "unplaced"

    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/board?status=unplaced&q={package_id}")
    assert await broker.locator(f"tr[data-package-id='{package_id}'] .console-clock").count() == 1  # its wait clock
    await broker.goto(f"{console}/packages/{package_id}")
    await pages.check(broker, "package-unplaced")
    # Cancelling needs a reason code: asked for at the top, with the words typed kept; nothing changes.
    await broker.fill("#cancel-reason-text", "the family found a carer")
    await broker.click("button:has-text('Cancel the package')")
    assert await summary_of(broker) == [("cancel-reason", "Select why the package is cancelled")]
    assert await broker.evaluate("document.activeElement.classList.contains('govuk-error-summary')")
    assert await broker.input_value("#cancel-reason-text") == "the family found a carer"
    assert "Select why the package is cancelled" in await broker.inner_text("#cancel-reason-error")
    assert (await broker.inner_text("#package-status")).strip() == "unplaced"
    await pages.check(broker, "package-action-refused")
    await pages.narrow(broker, "package-action-refused")
    # Words in the address are never shown as the console's: unknown codes show nothing.
    await broker.goto(f"{console}/packages/{package_id}?refused=Approved+by+the+director&done=Approved+by+the+director")
    assert "director" not in await broker.inner_text("main")
    assert await broker.locator(".govuk-error-summary, .govuk-notification-banner").count() == 0

    await broker.click("button:has-text('Offer again now')")
    await broker.wait_for_url(re.compile(r"done=reoffer"))
    assert "re-offered" in await broker.inner_text("#timeline")
    timeline = httpx.get(f"{stack.url('brokerage')}/packages/{package_id}", timeout=10, auth=staff()).json()["timeline"]
    assert any(t["stage"] == "re-offered" and t["detail"].get("requested_by") == "demo-broker" for t in timeline)


async def test_the_board_puts_the_unplaced_queue_first_and_filters(stack, console, pages):
    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/board?status=all")
    statuses = [
        s.strip().replace(" ", "_") for s in await broker.locator("#board-rows .console-status").all_inner_texts()
    ]
    assert statuses, "the board is empty"
    first = await broker.locator("#board-rows tr[data-package-id]").first.get_attribute("data-package-id")
    group = {"unplaced": 0, "awaiting_approval": 1}
    assert [group.get(s, 2) for s in statuses] == sorted(group.get(s, 2) for s in statuses)
    # The work queue (the default) lists open work only, with a count per status.
    await broker.goto(f"{console}/board")
    open_statuses = {
        s.strip().replace(" ", "_") for s in await broker.locator("#board-rows .console-status").all_inner_texts()
    }
    assert open_statuses <= set(OPEN)
    assert "Open work" in await broker.inner_text(".console-counts")
    zone, _ = roomiest_zone(stack)
    await broker.select_option("#zone", zone)
    await broker.select_option("#status", "placed")
    await broker.click("button:has-text('Search and filter')")
    rows = broker.locator("#board-rows tr[data-package-id]")
    for i in range(await rows.count()):
        cells = await rows.nth(i).locator("td").all_inner_texts()
        assert cells[1].strip() == "placed" and cells[3].strip().startswith(f"{zone},")
    await pages.check(broker, "board-filtered")
    # A search by a package's reference finds it; a malformed one is explained by the field.
    assert first
    await broker.goto(f"{console}/board?status=all&q={first}")
    assert await broker.locator("#board-rows tr[data-package-id]").count() == 1
    await broker.goto(f"{console}/board?q=12%2034")
    assert "10 digits" in await broker.inner_text("#q-error")
    await pages.check(broker, "board-search-refused")


async def test_ops_see_a_dead_letter_with_its_origin_and_replay_it(console, pages, infra):
    from aiokafka import AIOKafkaProducer

    from services.runtime import topics
    from services.runtime.kafka import kafka_security

    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **kafka_security())
    await producer.start()
    try:  # not an event: the brokerage's consumer dead-letters it with its origin (and so does reporting's)
        sent = await producer.send_and_wait(
            topics.resolve("providers.answers"), b'{"event_type": "BidSubmitted"}', key=b"console-replay-me"
        )
    finally:
        await producer.stop()
    origin = f"{sent.topic}/{sent.partition}@{sent.offset}"
    ops = await pages.signed_in("demo-ops")
    await ops.goto(f"{console}/ops/dead-letters")
    row = ops.locator("tr[data-letter-id]", has_text=origin).filter(has_text=topics.group("brokerage"))
    for _ in range(60):
        if await row.count():
            break
        await asyncio.sleep(0.5)
        await ops.reload()
    assert await row.count() == 1 and "invalid" in await row.inner_text()
    before = await ops.locator("tr[data-letter-id]").count()
    await pages.check(ops, "dead-letters-listed")
    await row.locator("button:has-text('Replay')").click()
    assert "was put back on its topic" in await ops.inner_text(".govuk-notification-banner--success")
    for _ in range(60):  # the replayed bytes are still not an event: dead-lettered again, from their new offset
        if await ops.locator("tr[data-letter-id]").count() > before:
            break
        await asyncio.sleep(0.5)
        await ops.reload()
    assert await ops.locator("tr[data-letter-id]").count() > before


async def test_a_broker_pauses_resumes_and_ends_a_running_package_and_a_bad_date_is_shown_by_its_field(
    stack, console, pages
):
    """Decision record 0078: the package page offers pause, resume and end by the package's state;
    a refused ending (before care started) is shown next to the date, and nothing changes."""
    zone, district = roomiest_zone(stack)
    today = dt.date.today()
    body = {
        "zone": zone,
        "band": "urban",
        "postcode_district": district,
        "hours_per_week": "7",
        "visits": {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
        "needs": ["personal_care"],
        "urgency": "community",
        "start_date": today.isoformat(),
        "person": {
            "full_name": "Cy Example",
            "address": "3 Market Place",
            "postcode": f"{district} 1AB",
            "nhs_number": "9998765439",
        },
    }
    brokerage = stack.url("brokerage")
    created = httpx.post(f"{brokerage}/packages", json=body, timeout=10, auth=staff())
    assert created.status_code == 201, created.text
    package_id = created.json()["package_id"]
    for _ in range(120):
        status = httpx.get(f"{brokerage}/packages/{package_id}", timeout=10, auth=staff()).json()["status"]
        if status == "placed":
            break
        await asyncio.sleep(0.5)
    assert status == "placed"
    started = httpx.post(
        f"{brokerage}/packages/{package_id}/start", json={"started_on": today.isoformat()}, timeout=10, auth=staff()
    )
    assert started.status_code == 200, started.text

    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/packages/{package_id}")
    assert await broker.locator("button:has-text('Cancel the package')").count() == 0
    # Paused for a hospital stay (today is the form's default date).
    await broker.select_option("#pause-reason", "admitted_to_hospital")
    await broker.click("button:has-text('Pause the package')")
    await broker.wait_for_url(re.compile(r"done=pause"))
    assert (await broker.inner_text("#package-status")).strip() == "paused"
    assert "admitted to hospital" in await broker.content()
    await pages.check(broker, "package-paused")
    await broker.click("button:has-text('Resume the package')")
    await broker.wait_for_url(re.compile(r"done=resume"))
    assert (await broker.inner_text("#package-status")).strip() == "started"

    # A hand-back with no date: asked for at the top, focused, the reason and words chosen kept.
    await broker.select_option("#hand-back-reason", "staff_shortage")
    await broker.fill("#hand-back-reason-text", "two carers left in March")
    await broker.click("button:has-text('Record the hand-back')")
    assert await summary_of(broker) == [("notice_ends_on-day", "Enter the provider's last day of care")]
    assert await broker.evaluate("document.activeElement.classList.contains('govuk-error-summary')")
    assert await broker.input_value("#hand-back-reason") == "staff_shortage"
    assert await broker.input_value("#hand-back-reason-text") == "two carers left in March"
    assert (await broker.inner_text("#package-status")).strip() == "started"
    await pages.check(broker, "package-hand-back-refused")

    # An ending dated before care started: refused, the complaint beside the date; nothing changes.
    before = today - dt.timedelta(days=1)
    for part, value in (("day", before.day), ("month", before.month), ("year", before.year)):
        await broker.fill(f"#effective_date-{part}", str(value))
    await broker.select_option("#end-reason", "moved_to_residential_care")
    await broker.click("button:has-text('End the package')")
    await broker.wait_for_selector("#effective_date-error")
    assert "must be on or after the day care started" in await broker.inner_text("#effective_date-error")
    assert (await broker.inner_text("#package-status")).strip() == "started"
    await pages.check(broker, "package-end-refused")
    for part, value in (("day", today.day), ("month", today.month), ("year", today.year)):
        await broker.fill(f"#effective_date-{part}", str(value))
    await broker.select_option("#end-reason", "moved_to_residential_care")
    await broker.click("button:has-text('End the package')")
    await broker.wait_for_url(re.compile(r"done=end"))
    assert (await broker.inner_text("#package-status")).strip() == "ended"
    assert "moved to residential care" in await broker.content()
    assert await broker.locator("#actions form").count() == 0


async def test_ops_see_health_at_a_glance_each_count_linking_to_its_detail_with_a_badge_and_banner(
    stack, console, pages, infra
):
    from aiokafka import AIOKafkaProducer

    from services.runtime import topics
    from services.runtime.kafka import kafka_security

    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, **kafka_security())
    await producer.start()
    try:  # not an event: dead-lettered by its consumers, so operations have something to see
        await producer.send_and_wait(topics.resolve("providers.answers"), b"not json", key=b"console-overview")
    finally:
        await producer.stop()
    ops = await pages.signed_in("demo-ops")
    for _ in range(60):  # the overview reads Kafka at most every 15 seconds
        await ops.goto(f"{console}/ops")
        if (await ops.inner_text("#count-dead-letters .console-card__value")).strip() not in ("0", "?"):
            break
        await asyncio.sleep(1)
    dead = int(await ops.inner_text("#count-dead-letters .console-card__value"))
    assert dead >= 1
    assert await ops.get_attribute("#count-dead-letters a", "href") == "/ops/dead-letters"
    assert await ops.get_attribute("#count-failed-notifications a", "href") == "/ops/notifications"
    assert await ops.get_attribute("#count-lagging a", "href") == "/ops/lag?behind=1"
    assert await ops.get_attribute("#count-not-ready a", "href") == "#services"

    # The overview's figures are at most 15 s old, and other tests' notifications keep failing: the
    # count shown lies between the service's count before that age and its count after the page.
    def failed_count() -> int:
        url = f"{stack.url('notifications')}/deliveries/failed"
        return int(httpx.get(url, timeout=10, auth=staff("demo-ops")).json()["count"])

    before = failed_count()
    await asyncio.sleep(16)
    await ops.goto(f"{console}/ops")
    shown = int(await ops.inner_text("#count-failed-notifications .console-card__value"))
    assert before <= shown <= failed_count()
    services = await ops.locator("#services ~ .console-table-scroll tr[data-service]").all_inner_texts()
    assert len(services) == 4 and all("Ready" in s for s in services), services
    assert int(await ops.inner_text("#count-not-ready .console-card__value")) == 0
    # Something is wrong: said at the top, and by a badge on the menu that every operations page shows.
    # The same figure as this page's card (the count may have grown since the first look: every
    # consumer of the topic dead-letters the record in its own time, the reporting service's a second
    # or so later than the others, decision 0136).
    now_dead = int(await ops.inner_text("#count-dead-letters .console-card__value"))
    assert now_dead >= dead
    assert f"{now_dead} dead letter" in await ops.inner_text("#health-problems")
    assert int(await ops.inner_text("#ops-badge .console-badge__count")) >= 1
    await pages.check(ops, "ops-overview")
    await pages.narrow(ops, "ops-overview")
    await ops.click("#count-dead-letters a")
    await ops.wait_for_url(f"{console}/ops/dead-letters")
    assert await ops.locator("tr[data-letter-id]").count() >= 1
    assert "dead letter" in await ops.inner_text("#health-banner")
    assert await ops.locator("#ops-badge").count() == 1
    await ops.goto(f"{console}/ops/lag?behind=1")
    assert await ops.locator("tr[data-group]").count() == await ops.locator("tr[data-behind=true]").count()
    await pages.narrow(ops, "lag-behind")


@pytest.fixture(scope="module")
async def above_rate_market(stack, database_url):
    """Every automatic adapter bids 8% above the band rate for isolated areas (the premium its
    rules allow), so an isolated package gets only above-rate bids; put back afterwards."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT provider_id, adapter FROM providers.providers")
    finally:
        await conn.close()
    original = {r["provider_id"]: json.loads(r["adapter"]) for r in rows}
    automatic = {p: a for p, a in original.items() if a.get("kind", "automatic") == "automatic"}
    async with httpx.AsyncClient(base_url=stack.url("providers"), timeout=10, auth=staff("demo-admin")) as client:
        for provider_id, adapter in automatic.items():
            premium = (adapter.get("premium_percent") or {}) | {"isolated": "8"}
            r = await client.put(f"/providers/{provider_id}/adapter", json=adapter | {"premium_percent": premium})
            assert r.status_code == 200, r.text
        yield
        for provider_id, adapter in automatic.items():
            r = await client.put(f"/providers/{provider_id}/adapter", json=adapter)
            assert r.status_code == 200, r.text


async def test_an_above_rate_bid_is_decided_on_its_own_page_within_the_roles_limit_and_confirmed(
    stack, console, pages, above_rate_market
):
    """Issue 19: the bidder, the rate against the band rate and the weekly cost on a decision page;
    the signed-in role's limit in the scheme of delegation (decision record 0052) and who else must
    approve beyond it; a first approval below the limit, then a second approver whose limit covers
    the bid (decision record 0123); nobody approves twice or their own request; a confirmation
    before anything happens."""
    zone, district = roomiest_zone(stack, band="isolated")
    body = {
        "zone": zone,
        "band": "isolated",
        "postcode_district": district,
        "hours_per_week": "7",
        "visits": {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
        "needs": ["personal_care"],
        "urgency": "community",
        "start_date": (dt.date.today() + dt.timedelta(days=3)).isoformat(),
        "person": {
            "full_name": "Di Example",
            "address": "4 Moor Lane",
            "postcode": f"{district} 1AB",
            "nhs_number": "9998765439",
        },
    }
    brokerage = stack.url("brokerage")
    created = httpx.post(f"{brokerage}/packages", json=body, timeout=10, auth=staff("demo-manager"))
    assert created.status_code == 201, created.text
    package_id = created.json()["package_id"]
    for _ in range(120):
        status = httpx.get(f"{brokerage}/packages/{package_id}", timeout=10, auth=staff()).json()["status"]
        if status not in ("requested", "offered"):
            break
        await asyncio.sleep(0.5)
    assert status == "awaiting_approval"
    record = httpx.get(f"{brokerage}/packages/{package_id}/explanation", timeout=10, auth=staff()).json()["record"]
    [asked] = [e for e in record["exceptions"] if e["decision"] is None]
    rate, band_rate = Decimal(asked["hourly_rate"]), Decimal(asked["band_rate"])
    names = {
        p["provider_id"]: p["name"]
        for p in httpx.get(f"{brokerage}/reference/providers", timeout=10, auth=staff()).json()
    }

    # A broker (5%): the facts, and that the bid needs someone with a higher limit - but a broker may
    # record the first of two approvals (deploy/reference/delegation.yaml second_approver, decision 0123).
    broker = await pages.signed_in("demo-broker")
    await broker.goto(f"{console}/packages/{package_id}")
    await broker.click("#decide")
    await broker.wait_for_url(f"{console}/packages/{package_id}/decision")
    assert await broker.inner_text("#bidder") == names[asked["provider_id"]]
    assert await broker.inner_text("#rate") == f"£{rate} an hour"
    assert f"£{rate - band_rate} an hour" in await broker.inner_text("#above")
    assert f"£{(rate * 7).quantize(Decimal('0.01'))}" in await broker.inner_text("#weekly-cost")
    assert f"£{(rate - band_rate) * 7:.2f} a week more" == await broker.inner_text("#weekly-difference")
    assert "up to 5% above the band rate" in await broker.inner_text("#limit")
    assert "No approval yet" in await broker.inner_text("#approvals")
    assert "a senior broker, a manager or the head of service" in await broker.inner_text("#first-of-two")
    await pages.check(broker, "decision-beyond-limit")
    await pages.narrow(broker, "decision-beyond-limit")
    await broker.check("input[name=decision][value=approve]")
    assert "first of two" in await broker.inner_text("label[for=decision]")
    await broker.select_option("#decision-reason", "urgent_discharge")
    await broker.click("button:has-text('Continue')")
    assert "Record the first of two approvals" in await broker.inner_text("#check-decision")
    await broker.click("#confirm")
    await broker.wait_for_url(re.compile(r"done=first-approval"))
    assert "first of two" in await broker.inner_text("#done")
    assert "demo-broker" in await broker.inner_text("#first-approval")
    first = httpx.get(f"{brokerage}/packages/{package_id}", timeout=10, auth=staff()).json()
    assert first["status"] == "awaiting_approval"
    assert [t["detail"]["approved_by"] for t in first["timeline"] if t["stage"] == "exception first approval"] == [
        "demo-broker"
    ]
    # Nobody approves twice: the page says so and offers refusing only; posting it by hand is refused.
    await broker.goto(f"{console}/packages/{package_id}/decision")
    assert "already approved" in await broker.inner_text("#already-approved")
    assert await broker.locator("input[name=decision][value=approve]").count() == 0
    csrf = await broker.get_attribute("form[action$='/decision'] input[name=csrf_token]", "value")
    response = await broker.request.post(
        f"{console}/packages/{package_id}/decision/confirm",
        form={"csrf_token": csrf, "decision": "approve", "reason": "urgent_discharge", "reason_text": ""},
    )
    assert response.status == 400 and "already approved this bid" in await response.text()
    # Another broker cannot give the second approval: it must be within the approver's limit.
    broker2 = await pages.signed_in("demo-broker-2")
    await broker2.goto(f"{console}/packages/{package_id}/decision")
    assert "needs approval by a senior broker, a manager or the head of service" in await broker2.inner_text(
        "#second-approver"
    )
    assert await broker2.locator("input[name=decision][value=approve]").count() == 0

    # The manager requested it: cannot approve their own request, whatever their limit.
    manager = await pages.signed_in("demo-manager")
    await manager.goto(f"{console}/packages/{package_id}/decision")
    assert "up to 15% above the band rate" in await manager.inner_text("#limit")
    assert "You requested this package" in await manager.inner_text("#own-request")
    assert await manager.locator("input[name=decision][value=approve]").count() == 0

    # A senior broker finds it on the board (decision 0133): flagged, counted, and a filter of its own.
    senior = await pages.signed_in("demo-senior")
    await senior.goto(f"{console}/board")
    row = senior.locator(f"tr[data-package-id='{package_id}']")
    assert "Awaiting second approval" in await row.inner_text()
    await senior.click("#count-second-approval a")
    assert "status=second_approval" in senior.url
    listed = await senior.eval_on_selector_all("#board tbody tr[data-package-id]", "rows => rows.map(r => r.innerText)")
    assert listed and all("Awaiting second approval" in r for r in listed)
    assert await senior.locator(f"tr[data-package-id='{package_id}']").count() == 1
    await pages.check(senior, "board-second-approval")
    await pages.narrow(senior, "board-second-approval")
    # A senior broker (10%) may: a missing reason is asked for at the top, the words typed kept...
    await senior.goto(f"{console}/packages/{package_id}/decision")
    assert "demo-broker, broker (up to 5% above the band rate)" in await senior.inner_text("#approvals")
    assert "whose limit covers it" in await senior.inner_text("#still-needed")
    assert "Your approval is the second: it places the package" in await senior.inner_text("#within-limit")
    await senior.check("input[name=decision][value=approve]")
    await senior.fill("#decision-reason-text", "only provider able to start this week")
    await senior.click("button:has-text('Continue')")
    assert await summary_of(senior) == [("decision-reason", "Select the reason for your decision")]
    assert await senior.evaluate("document.activeElement.classList.contains('govuk-error-summary')")
    assert await senior.input_value("#decision-reason-text") == "only provider able to start this week"
    assert await senior.is_checked("input[name=decision][value=approve]")
    await pages.check(senior, "decision-refused")
    # ...then a page to check the decision, and nothing happens until it is confirmed.
    await senior.select_option("#decision-reason", "urgent_discharge")
    await senior.click("button:has-text('Continue')")
    assert "Approve the above-rate bid" in await senior.inner_text("#check-decision")
    assert httpx.get(f"{brokerage}/packages/{package_id}", timeout=10, auth=staff()).json()["status"] == (
        "awaiting_approval"
    )
    await pages.check(senior, "decision-check")
    await pages.narrow(senior, "decision-check")
    await senior.click("#confirm")
    await senior.wait_for_url(re.compile(r"done=approve"))
    assert "approved" in await senior.inner_text("#done")
    package = httpx.get(f"{brokerage}/packages/{package_id}", timeout=10, auth=staff()).json()
    assert package["status"] == "placed" and package["provider_id"] == asked["provider_id"]
    await senior.goto(f"{console}/board?status=all&q={package_id}")
    assert "Awaiting second approval" not in await senior.inner_text(f"tr[data-package-id='{package_id}']")
    assert any(
        t["stage"] == "exception approved" and t["detail"]["decided_by"] == "demo-senior" for t in package["timeline"]
    )
    # Both approvals in the decision record, with who, when and the limit each was given under.
    record = httpx.get(f"{brokerage}/packages/{package_id}/explanation", timeout=10, auth=staff()).json()["record"]
    [decided] = [e for e in record["exceptions"] if e["decision"] == "approved"]
    assert [(a["approver"], a["step"], a["limit_percent"]) for a in decided["approvals"]] == [
        ("demo-broker", "first", "5.00"),
        ("demo-senior", "final", "10.00"),
    ]
