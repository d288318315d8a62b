"""The console's templates rendered without a server: what each role is offered on a package page."""

import datetime as dt
import re
from html import unescape
from typing import Any

from services.console import domain
from services.console.api.brokers import REASONS
from services.console.api.pages import TEMPLATES, navigation
from services.console.domain import Permission
from services.console.handlers import Session

PACKAGE: dict[str, Any] = {
    "package_id": "6f1c2d9e-0000-4000-8000-000000000001",
    "status": "awaiting_approval",
    "requested_by": "broker1",
    "package": {
        "zone": "melton",
        "band": "rural",
        "urgency": "community",
        "hours_per_week": "7.00",
        "start_date": "2026-03-05",
        "postcode_district": "LE13",
        "funding": "council",
        "needs": ["personal_care"],
        "visits": {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
    },
    "policy": "prime-supplementary",
    "rate_card": "2020-21",
    "band_rate": "22.95",
    "provider_id": None,
    "hourly_rate": None,
    "requested_at": "2026-03-01T09:00:00+00:00",
    "window_closes_at": None,
    "offer_rounds": [],
    "timeline": [],
}
EXPLANATION = {"explanation": {"broker": "Only bids above the band rate.", "family": "We are still looking."}}


def session(role: str) -> Session:
    return Session(
        token_hash=b"x",
        kind="staff",
        csrf_token="tok",
        expires_at=dt.datetime.now(dt.UTC),
        username=f"{role}1",
        display_name=role,
        role=role,
    )


def render(role: str, person=None, context: dict | None = None, **package) -> str:
    s = session(role)
    return TEMPLATES.env.get_template("package.html").render(
        session=s,
        nav=navigation(s, "/board"),
        csrf_token=s.csrf_token,
        p=PACKAGE | package,
        explanation=EXPLANATION,
        person=person,
        names={},
        today=dt.date(2026, 3, 6),
        reasons=REASONS,
        **({"created": False, "done": None} | (context or {})),
    )


def refused(role: str, action: str, form: dict, **package) -> str:
    """The package page after ``action`` was refused with ``form``'s answers, as brokers.act renders it."""
    problems = domain.action_problems(action, form, package=PACKAGE | package, today=dt.date(2026, 3, 6))
    return render(
        role,
        context={
            "failed": action,
            "action_errors": {action: {k: v for k, v in problems.items() if k != "status"}},
            "state_errors": [problems["status"]] if "status" in problems else [],
            "action_values": {action: form},
            "links": domain.action_links(action),
            "errors": problems,
        },
        **package,
    )


def summary(html: str) -> list[tuple[str, str]]:
    """The error summary's items: (link target, words), in order."""
    box = html.split('class="govuk-error-summary"')[1].split("</ul>")[0]
    return [(t, unescape(w)) for t, w in re.findall(r'<li><a href="#([^"]+)">([^<]+)</a></li>', box)]


def test_an_above_rate_bid_is_summarised_and_decided_on_its_own_page():
    record = {
        "exceptions": [
            {"provider_id": "oak-care", "hourly_rate": "24.50", "band_rate": "22.95", "decision": None},
        ]
    }
    above = domain.above_rate_of(record, "7.00")
    html = render("broker", person={"full_name": "Ada Example"}, context={"above": above})
    assert f'href="/packages/{PACKAGE["package_id"]}/decision"' in html
    assert "£24.50 an hour against the band rate of £22.95 (6.8% above)" in html
    assert "£171.50: £10.85 a week more than at the band rate" in html
    assert "/approve" not in html and "/reject" not in html, "approving has its own pages, with a confirmation"
    assert html.count('name="csrf_token" value="tok"') == 1 + 1 + 1 + 1  # sign-out, cancel, funding, a concern
    assert "Ada Example" in html and "/reoffer" not in html and "/start" not in html


def test_actions_follow_the_packages_state():
    assert "/reoffer" in render("broker", status="unplaced") and "/approve" not in render("broker", status="unplaced")
    started = render("broker", status="started")
    assert "/start" not in started and "/cancel" not in started and "/hand-back" in started
    assert "/hand-back" in render("broker", status="placed") and "/hand-back" not in render("broker", status="unplaced")


def test_reasons_are_chosen_from_the_codes_with_optional_notes():
    """Issue 14: a reason is a code from its vocabulary (a select), the words optional and separate."""
    html = render("broker", status="placed")
    for action, codes in (("cancel", REASONS["cancel"]), ("hand-back", REASONS["hand-back"])):
        select = html.split(f'id="{action}-reason" name="reason">')[1].split("</select>")[0]
        assert re.findall(r'<option value="([a-z_]*)">', select) == ["", *codes]
        assert f'id="{action}-reason-text" name="reason_text"' in html
    assert '<input class="govuk-input" id="cancel-reason"' not in html
    assert ">moved to residential care<" in html  # codes shown in words


def test_operations_see_no_person_and_no_actions():
    html = render("ops")
    assert 'id="person"' not in html and 'id="actions"' not in html
    assert "Live events" in html and "New package" not in html


def test_a_running_package_offers_pause_and_end_and_a_paused_one_resume_and_end_never_cancel():
    """Decision record 0078: the actions follow the state; reasons are codes in words."""
    started = render("broker", status="started", provider_id="oak-care")
    pid = PACKAGE["package_id"]
    assert f'action="/packages/{pid}/pause"' in started and f'action="/packages/{pid}/end"' in started
    assert f'action="/packages/{pid}/resume"' not in started
    paused = render(
        "broker",
        status="paused",
        provider_id="oak-care",
        paused_on="2026-03-05",
        pause_reason="admitted_to_hospital",
        hold_expires_at="2026-03-19T10:00:00+00:00",
    )
    assert f'action="/packages/{pid}/resume"' in paused and f'action="/packages/{pid}/end"' in paused
    for action in ("pause", "cancel", "hand-back", "start"):
        assert f'action="/packages/{pid}/{action}"' not in paused, action
    assert "admitted to hospital" in paused and "the provider keeps it until" in paused
    select = started.split('id="end-reason" name="reason">')[1].split("</select>")[0]
    assert re.findall(r'<option value="([a-z_]*)">', select) == ["", *REASONS["end"]]
    assert "hospital_stay_exceeded_hold" not in select, "the platform's own code is not offered"
    ended = render("broker", status="ended", provider_id="oak-care", ended_on="2026-03-06", end_reason="died")
    assert "/end" not in ended and "/pause" not in ended and "/cancel" not in ended and "the person died" in ended
    assert "/pause" not in render("ops", status="started"), "only the roles that may act are offered it"


def test_a_refused_ending_shows_the_complaint_next_to_the_date_and_keeps_the_answers():
    form = {
        "reason": "moved_to_residential_care",
        "effective_date-day": "1",
        "effective_date-month": "3",
        "effective_date-year": "2026",
        "reason_text": "moved to Oak House",
    }
    html = refused("broker", "end", form, status="started", provider_id="oak-care", started_on="2026-03-05")
    assert summary(html) == [
        ("effective_date-day", "The first day without care must be on or after the day care started (5 March 2026)")
    ]
    assert 'id="effective_date-error"' in html and "govuk-input--error" in html
    assert 'id="paused_on-error"' not in html, "only the refused form's field"
    end = html.split('id="end-form"')[1].split("</form>")[0]
    assert 'value="moved_to_residential_care" selected' in end and ">moved to Oak House</textarea>" in end
    assert 'name="effective_date-day" type="text" inputmode="numeric" value="1"' in end
    assert "<title>Error: " in html


def test_a_hand_back_with_no_date_and_no_reason_lists_both_at_the_top_in_the_pages_order():
    form = {"reason": "", "reason_text": "two carers left", "notice_ends_on-day": "", "notice_ends_on-month": ""}
    html = refused("broker", "hand-back", form, status="placed", provider_id="oak-care")
    assert summary(html) == [
        ("notice_ends_on-day", "Enter the provider's last day of care"),
        ("hand-back-reason", "Select why the provider is handing the package back"),
    ]
    assert html.index("govuk-error-summary") < html.index("<h1"), "the summary comes first, where the page opens"
    assert ">two carers left</textarea>" in html, "what was typed is kept"


def test_a_started_package_offers_a_change_prefilled_with_its_visits_and_a_pending_one_says_so():
    """Decision record 0082: the change form for those who may act, on a started package only."""
    pid = PACKAGE["package_id"]
    started = render("broker", status="started", provider_id="oak-care", pending_change_id=None, changes=[])
    assert f'action="/packages/{pid}/change"' in started
    form = started.split('id="change-form"')[1].split("</form>")[0]
    assert (
        'name="calls_per_day" type="text" value="2"' in form
        and 'name="hours_per_week" type="text" value="7.00"' in form
    )
    select = form.split('id="change-reason" name="reason">')[1].split("</select>")[0]
    assert re.findall(r'<option value="([a-z_]*)">', select) == ["", *REASONS["change"]]
    assert 'name="discussed_with_person"' in form and 'id="change_effective_date"' in form
    pending = render(
        "broker",
        status="started",
        provider_id="oak-care",
        pending_change_id="c1",
        changes=[
            {
                "change_id": "c1",
                "previous_hours_per_week": "7.00",
                "hours_per_week": "10.50",
                "effective_date": "2026-03-09",
                "window_closes_at": "2026-03-08T10:00:00+00:00",
            }
        ],
    )
    assert 'id="change-form"' not in pending and "7 to 10.5 hours a week" in pending
    assert 'id="change-form"' not in render("broker", status="paused", provider_id="oak-care")
    assert 'id="change-form"' not in render("ops", status="started", provider_id="oak-care")


def test_a_refused_change_shows_each_complaint_next_to_its_question():
    form = {
        "calls_per_day": "1",
        "minutes_per_call": "30",
        "carers_per_call": "1",
        "days_per_week": "7",
        "hours_per_week": "20",
        "reason": "",
        "change_effective_date-day": "9",
        "change_effective_date-month": "3",
        "change_effective_date-year": "2026",
    }
    html = refused(
        "broker", "change", form, status="started", provider_id="oak-care", pending_change_id=None, changes=[]
    )
    assert [target for target, _ in summary(html)] == ["hours_per_week", "change-reason"]
    assert "1 call a day of 30 minutes with 1 carer, 7 days a week is 3.5 hours" in html
    assert 'id="hours_per_week-error"' in html and 'id="change-reason-error"' in html
    assert 'id="effective_date-error"' not in html, "only the refused form's fields"
    assert 'name="hours_per_week" type="text" value="20"' in html


def test_the_package_page_shows_no_words_from_the_address():
    html = render("broker", status="unplaced", context={"done": domain.DONE.get("<script>you were hacked")})
    assert "hacked" not in html and "govuk-notification-banner" not in html
    html = render("broker", status="unplaced", context={"done": domain.DONE["reoffer"]})
    assert "The package is being offered to providers again." in html


def test_the_change_form_becomes_the_apis_body_numbers_and_all():
    from services.console.api.brokers import _change_body

    body = _change_body(
        {
            "calls_per_day": "3",
            "minutes_per_call": "30",
            "carers_per_call": "1",
            "days_per_week": "seven",
            "hours_per_week": " 10.5 ",
            "reason": "needs_increased_after_fall",
            "change_effective_date-day": "9",
            "change_effective_date-month": "3",
            "change_effective_date-year": "2026",
            "discussed_with_person": "yes",
            "reason_text": "",
        }
    )
    assert body == {
        "hours_per_week": "10.5",
        "visits": {"calls_per_day": 3, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": "seven"},
        "reason": "needs_increased_after_fall",
        "effective_date": "2026-03-09",
        "discussed_with_person": True,
        "reason_text": None,
    }
    assert _change_body({})["discussed_with_person"] is False


def test_a_running_package_offers_a_review_to_those_who_may_act_with_its_due_date_and_history():
    """Decision record 0088: the review form on a started or paused package, for the brokerage team."""
    from services.console.api.reviews import REVIEW_CHOICES

    pid = PACKAGE["package_id"]
    reviews = [
        {
            "reviewed_on": "2026-02-01",
            "outcome": "technology_enabled_care",
            "technology": ["telecare_alarm"],
            "reviewed_by": "broker.kim",
            "next_review_due_on": "2027-02-01",
        }
    ]
    started = render("broker", status="started", provider_id="oak-care", review_due_on="2026-03-01", reviews=reviews)
    assert f'action="/packages/{pid}/review"' in started
    form = started.split('id="review-form"')[1].split("</form>")[0]
    assert 'name="csrf_token" value="tok"' in form
    assert re.findall(r'name="outcome" type="radio" value="([a-z_]*)"', form) == REVIEW_CHOICES["outcomes"]
    assert re.findall(r'name="technology" type="checkbox" value="([a-z_]*)"', form) == REVIEW_CHOICES["technology"]
    assert 'id="review-calls_per_day" name="calls_per_day" inputmode="numeric" value="2"' in form
    assert "Sunday 1 March 2026" in started and "overdue" in started  # due before "today", 6 March
    assert "a telecare alarm" in started and "broker.kim" in started
    assert 'id="review-form"' in render("broker", status="paused", provider_id="oak-care")
    for status in ("placed", "ended", "cancelled", "offered"):
        assert 'id="review-form"' not in render("broker", status=status, provider_id="oak-care"), status
    assert 'id="review-form"' not in render("ops", status="started", provider_id="oak-care")


def test_the_review_form_becomes_the_apis_body_with_only_what_its_outcome_needs():
    from services.console.api.reviews import review_body

    common = {"reviewed_on-day": "6", "reviewed_on-month": "3", "reviewed_on-year": "2026", "notes": " "}
    visits = {"calls_per_day": "1", "minutes_per_call": "30", "carers_per_call": "1", "days_per_week": "7"}
    dated = {"review_effective_date-day": "9", "review_effective_date-month": "3", "review_effective_date-year": "2026"}
    assert review_body(common | {"outcome": "no_change"} | visits) == {
        "outcome": "no_change",
        "reviewed_on": "2026-03-06",
    }
    tec = review_body(
        common
        | visits
        | dated
        | {"outcome": "technology_enabled_care", "hours_per_week": "3.5", "technology": "telecare_alarm"}
        | {"discussed_with_person": "yes"}
    )
    assert tec == {
        "outcome": "technology_enabled_care",
        "reviewed_on": "2026-03-06",
        "change": {
            "hours_per_week": "3.5",
            "visits": {"calls_per_day": 1, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7},
            "effective_date": "2026-03-09",
            "discussed_with_person": True,
        },
        "technology": ["telecare_alarm"],
    }
    ended = review_body(common | dated | {"outcome": "ended", "end_reason": "moved_to_residential_care", "notes": "x"})
    assert ended == {
        "outcome": "ended",
        "reviewed_on": "2026-03-06",
        "end": {"reason": "moved_to_residential_care", "effective_date": "2026-03-09"},
        "notes": "x",
    }


def test_the_review_queue_lists_overdue_and_due_reviews_with_links_and_the_menu_offers_it():
    s = session("ops")
    html = TEMPLATES.env.get_template("reviews.html").render(
        session=s,
        nav=navigation(s, "/reviews"),
        csrf_token=s.csrf_token,
        queue={
            "reviews": [
                {
                    "package_id": "aaaabbbb-1",
                    "status": "started",
                    "review_due_on": "2026-03-01",
                    "state": "overdue",
                    "days_overdue": 5,
                    "zone": "melton",
                    "provider_id": "oak-care",
                    "hours_per_week": "7.00",
                    "last_reviewed_on": None,
                },
                {
                    "package_id": "ccccdddd-2",
                    "status": "paused",
                    "review_due_on": "2026-03-10",
                    "state": "due",
                    "days_overdue": -4,
                    "zone": "melton",
                    "provider_id": "elm-care",
                    "hours_per_week": "14.00",
                    "last_reviewed_on": "2025-03-10",
                },
            ],
            "total": 2,
            "counts": {"overdue": 1, "due": 1},
            "due_by": "2026-03-20",
        },
        zones=[{"id": "melton", "name": "Melton"}],
        chosen_zone="",
        within="",
        problem="",
        today=dt.date(2026, 3, 6),
    )
    rows = html.split('id="review-queue"')[1]
    assert rows.index("aaaabbbb") < rows.index("ccccdddd")
    assert "overdue 5 days" in rows and "due in 4 days" in rows and "paused" in rows
    assert 'href="/packages/aaaabbbb-1#review"' in rows
    assert "<strong>1</strong> overdue, <strong>1</strong> due soon" in html
    assert {"href": "/reviews", "label": "Reviews", "current": True, "badge": None} in navigation(s, "/reviews")


def test_the_package_page_shows_who_pays_the_weekly_cost_and_a_funding_form_for_those_who_may_act():
    """Decision record 0089."""
    funding: dict[str, Any] = {
        "revision": 2,
        "periods": [
            {
                "effective_from": "2026-03-01",
                "funder": "nhs_discharge",
                "shares": [{"funder": "nhs_discharge", "percent": "100"}],
            },
            {
                "effective_from": "2026-03-29",
                "funder": "joint",
                "shares": [
                    {"funder": "council", "percent": "60"},
                    {"funder": "nhs_continuing_healthcare", "percent": "40"},
                ],
            },
        ],
        "top_up_paid_by": "third_party",
        "in_force": {"effective_from": "2026-03-01", "funder": "nhs_discharge", "shares": []},
        "weekly_cost": {
            "total": "182.00",
            "by_funder": {"nhs_discharge": "163.80"},
            "above_band": "18.20",
            "above_band_paid_by": "third_party",
            "above_band_is": "top_up",
        },
    }

    def page(role: str, **extra: Any) -> str:
        s = session(role)
        return TEMPLATES.env.get_template("package.html").render(
            session=s,
            nav=navigation(s, "/board"),
            csrf_token=s.csrf_token,
            p=PACKAGE | {"status": "started", "provider_id": "oak-care"},
            explanation=EXPLANATION,
            person=None,
            names={},
            today=dt.date(2026, 3, 6),
            reasons=REASONS,
            created=None,
            refused=None,
            done=None,
            **({"funding": funding} | extra),
        )

    html = page("broker", action_errors={"funding": {"periods.1.shares": "the shares add up to 90%, not 100%"}})
    table = html.split('id="funding-periods"')[1].split("</table>")[0]
    assert "Sunday 1 March 2026" in table and "in force" in table and "council 60%" in table
    assert "a top-up: any difference above the band rate is paid by third party" in html
    assert "£182.00" in html and "nhs discharge £163.80" in html and "paid by third party (top up)" in html
    form = html.split('id="funding-form"')[1].split("</form>")[0]
    assert 'name="csrf_token" value="tok"' in form and 'name="share_2_council"' in form
    assert "periods.1.shares: the shares add up to 90%, not 100%" in form
    assert 'name="calls_1"' in form and 'name="call_funder_2"' in form  # 2 calls a day: calls to name
    ops = page("ops")
    assert 'id="funding-periods"' in ops and 'id="funding-form"' not in ops
    # Decision 0121: a period naming a call says so, and the week's cost shows the call's part.
    by_call = funding | {
        "periods": [funding["periods"][0] | {"calls": [{"call": 1, "funder": "council"}]}],
        "weekly_cost": funding["weekly_cost"]
        | {
            "parts": [
                {"funder": "council", "basis": "calls", "calls": [1], "pounds": "81.90"},
                {"funder": "nhs_discharge", "basis": "share", "calls": [], "pounds": "81.90"},
            ]
        },
    }
    shown = page("broker", funding=by_call)
    table = shown.split('id="funding-periods"')[1].split("</table>")[0]
    assert "call 1 of each day: council; the rest: nhs discharge 100%" in table
    assert "council £81.90 (call 1 of each day), nhs discharge £81.90" in shown
    assert "No funding recorded; requested as council funded" in render("broker", status="placed")


def test_the_funding_form_becomes_the_apis_body():
    from services.console.api.reviews import funding_body

    form = {
        "funder_1": "nhs_discharge",
        "funding_from_1-day": "1",
        "funding_from_1-month": "3",
        "funding_from_1-year": "2026",
        "funder_2": "joint",
        "funding_from_2-day": "29",
        "funding_from_2-month": "3",
        "funding_from_2-year": "2026",
        "share_2_council": "60",
        "share_2_nhs_continuing_healthcare": " 30 ",
        "share_2_self_funder": "",
        "share_1_council": "50",  # a single funder's period: its per-cent boxes are not read
        "top_up_paid_by": "",
    }
    assert funding_body(form) == {
        "periods": [
            {"effective_from": "2026-03-01", "funder": "nhs_discharge"},
            {
                "effective_from": "2026-03-29",
                "funder": "joint",
                "shares": [
                    {"funder": "council", "percent": "60"},
                    {"funder": "nhs_continuing_healthcare", "percent": "30"},
                ],
            },
        ]
    }
    assert funding_body({"funder_1": "council", "top_up_paid_by": "person"}) == {
        "periods": [{"effective_from": "", "funder": "council"}],
        "top_up_paid_by": "person",
    }
    # Decision 0121: the calls ticked go with the funder paying them whole; one box ticked is a string.
    morning = {"funder_1": "council", "calls_1": "1", "call_funder_1": "nhs_discharge"}
    assert funding_body(morning)["periods"][0]["calls"] == [{"call": 1, "funder": "nhs_discharge"}]
    two = funding_body({"funder_1": "council", "calls_1": ["1", "3"], "call_funder_1": "nhs_continuing_healthcare"})
    assert [c["call"] for c in two["periods"][0]["calls"]] == [1, 3]
    assert "calls" not in funding_body({"funder_1": "council", "call_funder_1": "nhs_discharge"})["periods"][0]


def test_a_round_lists_who_was_not_offered_and_why_from_the_apis_map():
    """The API gives a round's exclusions as provider -> reasons; the page once showed "(-)" for each."""
    excluded = {
        "bluebell-care": ["does not serve zone melton"],
        "oak-care": ["capacity 2 h/week free", "lacks skills: x"],
    }
    round_ = {"offer_round": 1, "tier": "prime", "provider_ids": ["acorn-care"], "outcome": "settled", "answers": []}
    html = unescape(render("broker", offer_rounds=[round_ | {"excluded": excluded}]))
    assert (
        "Not offered: bluebell-care (does not serve zone melton); oak-care (capacity 2 h/week free; lacks skills: x)"
        in html
    )
    assert "(-)" not in html


def test_the_timeline_shows_details_in_words_never_json():
    timeline = [
        {
            "at": "2026-07-01T08:30:00+00:00",
            "stage": "package_changed",
            "detail": {
                "effective_date": "2026-07-06",
                "visits": {"calls_per_day": 2, "carers_per_call": 1},
                "needs": ["personal_care", "medication"],
                "discussed_with_person": True,
                "decided_at": "2026-07-01T08:30:00+00:00",
                "empty": None,
            },
        }
    ]
    html = unescape(render("broker", timeline=timeline))
    line = html.split('id="timeline"')[1].split('class="govuk-body-s">')[1].split("</span>")[0]
    assert not set(line) & set('{}[]"')
    assert "effective date Monday 6 July 2026" in line
    assert "visits calls per day 2; carers per call 1" in line
    assert "needs personal care, medication" in line
    assert "discussed with person yes" in line
    assert (
        "decided at 1 July 2026 09:30 BST" in line or "decided at Wed 1 Jul 2026 09:30 BST" in line or "09:30" in line
    )
    assert "empty" not in line


def portal_offers(failed: dict | None = None, offers: list[dict] | None = None) -> str:
    s = session("broker")
    offer = {
        "package_id": PACKAGE["package_id"],
        "package": PACKAGE["package"],
        "offer_round": 1,
        "tier": "prime",
        "window_closes_at": "2026-03-06T12:00:00+00:00",
        "time_left": "2 h 05 min left",
        "band_rate": "22.95",
    }
    return unescape(
        TEMPLATES.env.get_template("portal_offers.html").render(
            session=s,
            nav=[],
            csrf_token="tok",
            offers=[offer] if offers is None else offers,
            reasons=list(domain.DECLINE_WORDS),
            decline_words=domain.DECLINE_WORDS,
            refused=None,
            failed=failed or {},
            done=None,
        )
    )


def test_no_open_offers_is_said_once():
    """Found by a new user: with no offers the page had said both "your organisation has opened every
    open offer" and "You have no open offers"."""
    html = portal_offers(offers=[])
    assert "You have no open offers." in html
    assert "opened every open offer" not in html
    assert "opened every open offer" in portal_offers()  # its one offer opened (no opened_at: not new)


def test_a_portal_offer_shows_the_time_left_and_a_decline_with_no_reason_chosen():
    html = portal_offers()
    assert "2 h 05 min left" in html
    select = html.split('id="reason-')[1].split("</select>")[0]
    assert '<option value="" selected>Choose a reason</option>' in select  # no default reason
    assert 'value="22.95"' in html  # the band rate offered as the bid's rate


def test_a_refused_portal_answer_keeps_what_was_typed_with_the_problem_next_to_it():
    pid = PACKAGE["package_id"]
    typed = {"rate": "19,95", "earliest_start-day": "31", "earliest_start-month": "2", "earliest_start-year": "2026"}
    errors = domain.portal_answer_problems("bid", typed)
    assert set(errors) == {"rate", "earliest_start"}
    html = portal_offers({"package_id": pid, "answer": "bid", "typed": typed, "errors": errors})
    assert 'value="19,95"' in html and 'value="31"' in html
    assert f'href="#rate-{pid}"' in html and f'href="#earliest_start-{pid}-day"' in html
    assert f'id="earliest_start-{pid}-day"' in html  # the link's target exists
    declined = portal_offers(
        {
            "package_id": pid,
            "answer": "decline",
            "typed": {"reason": "other"},
            "errors": {"text": "Say why you are declining: you chose 'another reason'"},
        }
    )
    assert '<option value="other" selected>' in declined and f'href="#text-{pid}"' in declined


def test_the_portals_refusals_come_from_codes():
    assert domain.portal_refusal("bid", 409, {"code": "offer-closed", "detail": "x"}) == {
        "status": "This offer has closed: answers are no longer taken"
    }
    assert domain.portal_refusal("bid", 404, {"code": "not-found"}) == {"status": "This package was not offered to you"}
    assert domain.portal_answer_problems("decline", {"reason": ""}) == {
        "reason": "Select why you are declining this offer"
    }
    assert (
        domain.portal_answer_problems(
            "bid",
            {"rate": "£19.95", "earliest_start-day": "1", "earliest_start-month": "4", "earliest_start-year": "2027"},
        )
        == {}
    )


def test_the_decision_page_shows_who_approved_first_and_what_remains():
    """Decision record 0123: the first approval (who, role, limit, UK time) and what is still needed."""
    record = {
        "exceptions": [
            {
                "provider_id": "oak-care",
                "hourly_rate": "24.50",
                "band_rate": "22.95",
                "decision": None,
                "approvals": [
                    {
                        "approver": "broker7",
                        "approver_role": "broker",
                        "limit_percent": "5.00",
                        "within_limit": False,
                        "provider_id": "oak-care",
                        "hourly_rate": "24.50",
                        "step": "first",
                        "approved_at": "2026-07-01T09:00:00Z",
                    }
                ],
            }
        ]
    }
    above = domain.above_rate_of(record, "7.00")
    assert above is not None
    limits = {"broker": "5", "senior_broker": "10", "manager": "15", "head_of_service": None}
    second: dict[str, Any] = {"first_approval_below_limit": True, "two_approvals_above_percent": "20"}
    scheme = {"version": "2026-2", "limits_percent": limits, "second_approver": second}

    def page(role: str) -> str:
        s = session(role)
        authority = domain.approval_authority(
            role=role, username=s.username, requested_by="broker9", bid=above, limits=limits,
            second_approver=second,
        )  # fmt: skip
        approvers = domain.approvers_words(authority.approvers)
        return unescape(
            TEMPLATES.env.get_template("decision.html").render(
                session=s,
                nav=navigation(s, "/board"),
                csrf_token="tok",
                p=PACKAGE,
                above=above,
                authority=authority,
                scheme=scheme,
                approvers=approvers,
                bidder="Oak Care",
                still_needed=domain.still_needed(authority, approvers),
                limit_words=domain.limit_words,
                decision_reasons=REASONS["decision"],
                answers={},
                errors={},
                links={},
            )
        )

    senior = page("senior_broker")
    assert "broker7, broker (up to 5% above the band rate), 01 Jul 2026 10:00 BST: beyond their own limit" in senior
    assert "A second approval by someone else whose limit covers it" in senior
    assert "Your approval is the second: it places the package." in senior
    assert 'value="approve"' in senior and "Approve: place it with Oak Care at £24.50 an hour" in senior
    other_broker = page("broker")
    assert 'id="second-approver"' in other_broker and 'value="approve"' not in other_broker


def _admin_page(template: str, role: str, **context: Any) -> str:
    s = session(role)
    return unescape(
        TEMPLATES.env.get_template(template).render(session=s, nav=navigation(s, "/admin"), csrf_token="tok", **context)
    )


def test_the_disclosure_log_reads_in_peoples_words_in_uk_time_with_pages_and_filters_kept():
    params, problems, values = domain.disclosure_filters({"who": "demo-broker", "reader": "staff", "page": "2"})
    assert problems == {} and params == {"who": "demo-broker", "reader": "staff", "limit": 50, "offset": 50}
    log = {
        "total": 51,
        "disclosures": [
            {
                "package_id": PACKAGE["package_id"],
                "reader": "staff",
                "staff_user": "demo-broker",
                "fields": ["search:nhs_number"],
                "disclosed_at": "2026-07-01T09:00:00Z",
            },
            {
                "package_id": PACKAGE["package_id"],
                "reader": "provider",
                "provider_id": "oak-care",
                "credential_id": "c0ffee00-1111",
                "fields": ["full_name", "nhs_number"],
                "disclosed_at": "2026-12-01T09:00:00Z",
            },
        ],
    }
    html = _admin_page(
        "disclosures.html", "manager", log=log, errors={}, values=values, filters={"who": "demo-broker",
        "reader": "staff"}, page_number=2, pages=2, readers=domain.READERS, names={"oak-care": "Oak Care"},
        disclosed_words=domain.disclosed_words,
    )  # fmt: skip
    assert "01 Jul 2026 10:00 BST" in html and "01 Dec 2026 09:00 GMT" in html, "UK local time"
    assert "A search by NHS number" in html and "Full name, NHS number" in html
    assert "Oak Care" in html and "credential c0ffee00" in html
    assert "51 entries matching the filters, page 2 of 2" in html
    assert 'href="/admin/disclosures?who=demo-broker&reader=staff&page=1"' in html and 'rel="next"' not in html
    assert 'value="demo-broker"' in html, "the filters as typed"

    _, problems, values = domain.disclosure_filters({"package": "abc", "from": "2026-02-30", "to": "x"})
    assert list(problems) == ["package", "from", "to"], "every problem at once, in the form's order"
    html = _admin_page(
        "disclosures.html", "admin", log={"total": 0, "disclosures": []}, errors=problems, values=values, filters={},
        page_number=1, pages=1, readers=domain.READERS, names={}, disclosed_words=domain.disclosed_words,
    )  # fmt: skip
    assert 'href="#package"' in html and "Enter the from date as year-month-day" in html
    assert 'id="disclosures"' not in html
    _, backwards, _ = domain.disclosure_filters({"from": "2026-03-02", "to": "2026-03-01"})
    assert backwards == {"to": "The to date must be the same as or after the from date"}


def test_rate_cards_and_approval_limits_are_shown_read_only_with_the_roles_own_limit():
    bands, cards = domain.rate_card_rows(
        [
            {"version": "2027-28", "effective_from": "2027-04-01", "rates": {"rural": "23.50", "urban": "19.10"}},
            {"version": "2020-21", "effective_from": "2020-04-01", "rates": {"urban": "18.75", "rural": "22.95"}},
        ]
    )
    assert bands == ["urban", "rural"]
    html = _admin_page("rate_cards.html", "broker", bands=bands, cards=cards, in_force="2020-21")
    assert 'In force today: <strong class="govuk-tag govuk-tag--green">2020-21</strong>' in html
    assert "Thursday 1 April 2027" in html
    assert "£23.50" in html and "<form" not in html.split("<main")[1], "read-only"
    scheme = {
        "version": "2026-2",
        "limits_percent": {"broker": "5", "senior_broker": "10", "manager": "15", "head_of_service": None},
        "second_approver": {"first_approval_below_limit": True, "two_approvals_above_percent": "20"},
    }
    for role, words in (
        ("senior_broker", "As senior broker you may approve bids up to 10% above the band rate."),
        ("head_of_service", "As head of service you may approve any bid above the band rate."),
        ("admin", "As admin you may not approve bids above the band rate."),
    ):
        rows = domain.limit_rows(scheme, role)
        mine = next((r for r in rows if r["mine"]), None)
        html = _admin_page(
            "approval_limits.html", role, scheme=scheme, rows=rows, mine=mine, second=scheme["second_approver"]
        )
        assert words in " ".join(html.split()), role
    assert "more than 20% above the band rate take two approvals" in html
    assert [r["role"] for r in domain.limit_rows(scheme, "broker")] == [
        "broker", "senior_broker", "manager", "head_of_service"
    ]  # fmt: skip


def test_the_new_admin_pages_are_for_the_roles_the_api_lets_read_them():
    from services.console.clients import API_ROLE
    from services.runtime import permissions

    table = permissions.TABLE["brokerage"]
    for role in domain.Role:
        api_role = API_ROLE[role.value]
        if domain.can(role, Permission.disclosures):
            assert api_role in table[("GET", "/disclosures")], role
        if domain.can(role, Permission.reference):
            assert (
                api_role in table[("GET", "/reference/rate-cards")]
                and api_role in table[("GET", "/reference/delegation")]
            ), role
    assert {r for r in domain.Role if domain.can(r, Permission.disclosures)} == {
        domain.Role.manager, domain.Role.head_of_service, domain.Role.admin
    }  # fmt: skip
    assert not domain.can("broker", Permission.disclosures) and domain.can("broker", Permission.reference)
    assert not domain.can("ops", Permission.reference), "operations never see prices"
    menu = [item["href"] for item in navigation(session("manager"), "/board")]
    assert {"/admin/disclosures", "/admin/rate-cards", "/admin/approval-limits"} <= set(menu)


def test_a_timeline_detail_named_like_a_time_that_is_not_one_is_shown_as_it_is():
    """Found by a new user: a declined change's entry carried ``"carries_on_at": "7.00"`` (hours),
    and the package's page was a 500. Entries are history, never rewritten: whatever a detail named
    ``*_at``, ``*_on`` or ``*_date`` holds, the page shows it."""
    timeline = [
        {
            "at": "2026-07-01T08:30:00+00:00",
            "stage": "change declined",
            "detail": {"carries_on_at": "7.00", "moved_on": "soon", "start_date": 12, "noted_at": ["x"]},
        }
    ]
    html = unescape(render("broker", timeline=timeline))
    line = html.split('id="timeline"')[1].split('class="govuk-body-s">')[1].split("</span>")[0]
    assert "carries on at 7.00" in line and "moved on soon" in line and "start date 12" in line
    assert "noted at x" in line


def test_a_funding_entry_on_the_timeline_reads_as_a_sentence():
    """Found by a new user: a funding record's entry dumped every member of every period."""
    periods = [
        {
            "effective_from": "2026-12-04",
            "funder": "nhs_discharge",
            "calls": [],
            "shares": [{"funder": "nhs_discharge", "percent": "100"}],
        },
        {
            "effective_from": "2027-01-01",
            "funder": "joint",
            "shares": [{"funder": "council", "percent": "60"}, {"funder": "nhs_chc", "percent": "40"}],
            "calls": [{"call": 1, "funder": "nhs_chc"}],
        },
    ]
    timeline = [
        {"at": "2026-12-04T08:30:00+00:00", "stage": "funding recorded", "detail": {"revision": 2, "periods": periods}}
    ]
    html = unescape(render("broker", timeline=timeline))
    line = html.split('id="timeline"')[1].split('class="govuk-body-s">')[1].split("</span>")[0]
    assert (
        "periods nhs discharge from Friday 4 December 2026, then joint (council 60%, nhs chc 40%); "
        "call 1 paid by nhs chc from Friday 1 January 2027"
    ) in line
    assert "effective from" not in line and "percent" not in line
