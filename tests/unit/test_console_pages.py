"""The console's templates rendered without a server: what each role is offered on a package page."""

import datetime as dt
import re
from html import unescape
from typing import Any

from services.console import domain
from services.console.api.brokers import REASONS
from services.console.api.pages import TEMPLATES, navigation
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
    assert html.count('name="csrf_token" value="tok"') == 1 + 1  # sign-out, cancel
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
    assert 'id="change-form"' not in pending and "7.00 to 10.50 hours a week" in pending
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
