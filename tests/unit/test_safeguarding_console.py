"""The console's safeguarding pages rendered without a server (decision records 0106-0108): the
safeguarding role's start page, menu and pages; the package page's concern form for the brokerage team
and operations only; the form's answers as the providers API's body, or every problem at once."""

import datetime as dt
from html import unescape

import pytest

from services.console import domain
from services.console.api import safeguarding
from services.console.api.pages import TEMPLATES, navigation
from services.console.domain import Permission, Role
from services.providers.domain import ConcernCategory, ConcernOutcome, OfferPauseReason
from tests.unit.test_console_pages import PACKAGE, render, session

CONCERN = {
    "concern_id": "0b0e6a52-0000-4000-8000-000000000009",
    "reference": "SG-000009",
    "package_id": PACKAGE["package_id"],
    "provider_id": "bluebell-care",
    "category": "financial_or_material",
    "immediate_risk": True,
    "raised_by": "broker1",
    "raised_by_kind": "staff",
    "raised_by_role": "broker",
    "raised_at": dt.datetime(2026, 3, 6, 10, 0, tzinfo=dt.UTC),
    "status": "open",
    "paused": False,
    "outcome": None,
    "closed_by": None,
    "closed_at": None,
    "details": "Cash missing from the kitchen drawer after the lunch call <b>twice</b>",
    "adult_at_risk": None,
    "package_held_by": "bluebell-care",
    "decisions": [],
    "reads": [
        {"reader": "safeguarding1", "reader_role": "safeguarding", "read_at": dt.datetime(2026, 3, 6, tzinfo=dt.UTC)}
    ],
}


def page(template: str, role: str, **context) -> str:
    s = session(role)
    return TEMPLATES.env.get_template(template).render(
        session=s, nav=navigation(s, "/safeguarding"), csrf_token=s.csrf_token, **context
    )


def test_the_safeguarding_role_starts_on_its_queue_and_sees_nothing_else():
    assert domain.role_from_idp(["safeguarding"]) == Role.safeguarding
    assert domain.role_from_idp(["broker", "safeguarding"]) == Role.broker  # the most deciding role first
    assert domain.HOME[Role.safeguarding] == "/safeguarding"
    assert domain.PERMISSIONS[Role.safeguarding] == {Permission.safeguarding}
    assert [i["href"] for i in navigation(session("safeguarding"), "/")] == ["/safeguarding"]
    # Nobody else opens the queue; the brokerage team, operations and administrators raise concerns.
    for role in Role:
        assert domain.can(role, Permission.safeguarding) == (role == Role.safeguarding)
        assert domain.can(role, Permission.raise_concern) == (role in (*domain.BROKERAGE_TEAM, Role.ops, Role.admin))
    # A console-local account cannot have the role: the safeguarding team signs in through the IdP.
    problems = domain.staff_problems(username="sg.one", display_name="S", role="safeguarding", password="x" * 20)
    assert problems == {"role": "Select a role"}


def test_the_consoles_choices_are_the_providers_services_vocabularies():
    assert sorted(domain.CONCERN_CATEGORIES) == sorted(c.value for c in ConcernCategory)
    assert [r.value for r in OfferPauseReason] == domain.PAUSE_REASONS
    assert [o.value for o in ConcernOutcome] == domain.CONCERN_OUTCOMES


@pytest.mark.parametrize("role", ["broker", "manager", "ops", "admin"])
def test_the_package_page_offers_the_concern_form_to_those_who_follow_the_work(role):
    html = render(role, provider_id="bluebell-care", status="placed")
    assert 'action="/packages/6f1c2d9e-0000-4000-8000-000000000001/concern"' in html
    assert "The concern is about the provider, bluebell-care" in unescape(html)


def test_a_package_not_placed_offers_no_provider_subject():
    html = render("broker")
    assert 'id="concern-form"' in html and "about_provider" not in html


def test_the_form_becomes_the_apis_body_or_every_problem_at_once():
    placed = PACKAGE | {"provider_id": "bluebell-care"}
    body, problems = domain.concern_request(
        {"category": "neglect", "details": "  Left without a meal  ", "immediate_risk": "yes", "about_provider": "yes"},
        placed,
    )
    assert problems == {}
    assert body == {
        "subject": {"package_id": PACKAGE["package_id"], "provider_id": "bluebell-care"},
        "category": "neglect",
        "details": "Left without a meal",
        "immediate_risk": True,
    }
    body, _ = domain.concern_request({"category": "neglect", "details": "x", "adult_at_risk": "Ann Other"}, PACKAGE)
    assert body is not None and body["subject"] == {"package_id": PACKAGE["package_id"]}
    assert body["adult_at_risk"] == "Ann Other" and body["immediate_risk"] is False
    body, problems = domain.concern_request({"category": "rudeness", "details": " "}, placed)
    assert body is None and list(problems) == ["category", "details"]


def test_a_refused_concern_comes_back_with_its_problems_and_answers():
    html = page(
        "concern_new.html",
        "broker",
        p=PACKAGE,
        values={"category": "neglect", "details": ""},
        errors={"details": "Describe what happened or what you saw"},
        choices=safeguarding.CHOICES,
    )
    assert 'href="#details"' in html and 'value="neglect" selected' in html


def test_the_queue_shows_codes_and_links_never_words():
    queue = {"concerns": [CONCERN | {"paused": True}], "open": 1}
    html = page("safeguarding.html", "safeguarding", queue=queue, chosen="open")
    assert 'href="/safeguarding/0b0e6a52-0000-4000-8000-000000000009">SG-000009' in html
    assert "risk now" in html and "offers paused" in html and "financial or material" in html
    assert "kitchen" not in html


def test_the_concern_page_shows_the_words_escaped_and_the_forms_that_fit_its_state():
    html = page("concern.html", "safeguarding", c=CONCERN, choices=safeguarding.CHOICES, done=None)
    assert "&lt;b&gt;twice&lt;/b&gt;" in html  # escaped
    assert 'id="pause-form"' in html and 'id="outcome-form"' in html
    assert "safeguarding1 (safeguarding)" in html
    paused = page("concern.html", "safeguarding", c=CONCERN | {"paused": True}, choices=safeguarding.CHOICES)
    assert 'id="pause-form"' not in paused and "lifts its pause" in paused
    closed = CONCERN | {"status": "closed", "outcome": "risk_removed"}
    done = page("concern.html", "safeguarding", c=closed, choices=safeguarding.CHOICES)
    assert 'id="outcome-form"' not in done and "risk removed" in done
    package_only = page("concern.html", "safeguarding", c=CONCERN | {"provider_id": None}, choices=safeguarding.CHOICES)
    assert 'id="pause-form"' not in package_only
