"""The console's templates rendered without a server: what each role is offered on a package page."""

import datetime as dt

from services.console.api.pages import TEMPLATES, navigation
from services.console.handlers import Session

PACKAGE = {
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


def render(role: str, person=None, **package) -> str:
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
        created=None,
        refused=None,
        done=None,
    )


def test_a_broker_can_approve_or_refuse_an_above_rate_bid_each_form_with_its_csrf_token():
    html = render("broker", person={"full_name": "Ada Example"})
    for action in ("approve", "reject", "cancel"):
        assert f'action="/packages/{PACKAGE["package_id"]}/{action}"' in html
    assert html.count('name="csrf_token" value="tok"') == 1 + 3  # sign-out, approve, reject, cancel
    assert "Ada Example" in html and "/reoffer" not in html and "/start" not in html


def test_actions_follow_the_packages_state():
    assert "/reoffer" in render("broker", status="unplaced") and "/approve" not in render("broker", status="unplaced")
    started = render("broker", status="started")
    assert "/start" not in started and "/cancel" not in started and "/hand-back" in started
    assert "/hand-back" in render("broker", status="placed") and "/hand-back" not in render("broker", status="unplaced")


def test_operations_see_no_person_and_no_actions():
    html = render("ops")
    assert 'id="person"' not in html and 'id="actions"' not in html
    assert "Live events" in html and "New package" not in html
