"""The provider administration pages (issue 19): the rules before the API is asked, and the pages."""

import datetime as dt
from html import unescape

from services.console import domain
from services.console.api.pages import TEMPLATES, navigation
from services.console.handlers import Session

PROVIDER = {
    "provider_id": "bluebell-care",
    "name": "Bluebell Home Care",
    "tier": "prime",
    "status": "active",
    "zones": ["melton", "rutland-fringe"],
    "bands": ["urban", "rural"],
    "skills": ["personal_care", "end_of_life"],
    "weekly_capacity_hours": "450",
    "committed_hours": "407",
    "adapter": "automatic",
}


def admin() -> Session:
    return Session(
        token_hash=b"x",
        kind="staff",
        csrf_token="tok",
        expires_at=dt.datetime.now(dt.UTC),
        username="a1",
        display_name="Admin",
        role="admin",
    )


def render(name: str, **context) -> str:
    s = admin()
    base = {"session": s, "nav": navigation(s, "/admin/providers"), "csrf_token": "tok"}
    return unescape(TEMPLATES.env.get_template(name).render(**base, **context))


def test_admins_have_the_provider_pages_in_their_menu_and_brokers_do_not():
    assert domain.can("admin", domain.Permission.providers)
    assert not any(domain.can(role, domain.Permission.providers) for role in ("broker", "ops", "finance"))
    menu = [item["href"] for item in navigation(admin(), "/admin/providers")]
    assert "/admin/providers" in menu and "/admin/change-requests" in menu


def test_a_status_decision_needs_a_status_and_a_reason_each_named():
    assert domain.provider_status_problems({"status": "", "reason": ""}) == {
        "status": "Select the provider's new status",
        "reason": "Say why: it is kept in the provider's status history",
    }
    assert domain.provider_status_problems({"status": "suspended", "reason": "CQC inspection"}) == {}
    assert "reason" in domain.provider_status_problems({"status": "left", "reason": "x" * 501})
    refused = domain.provider_status_refusal(409, {"code": "status-not-allowed", "detail": "words"})
    assert refused == {"status": "The provider's status cannot change that way (a provider that left cannot come back)"}


def test_the_provider_page_offers_a_status_change_and_credentials_and_shows_an_issued_token_once():
    html = render(
        "admin_provider.html",
        provider=PROVIDER,
        history=[
            {"decided_at": "2026-11-02T10:00:00+00:00", "status": "suspended", "reason": "CQC", "decided_by": "a1"}
        ],
        credentials=[
            {
                "credential_id": "c-1",
                "label": "rostering",
                "created_at": "2026-11-01T09:00:00+00:00",
                "last_used_at": None,
                "revoked_at": None,
            }
        ],
        statuses=domain.PROVIDER_STATUS_WORDS,
        issued={"token": "hcp_secret-token"},
    )
    assert "Change the status" in html and 'action="/admin/providers/bluebell-care/status"' in html
    assert "02 Nov 2026 10:00 GMT" in html  # UK local time
    assert "hcp_secret-token" in html and 'action="/admin/providers/bluebell-care/credentials/c-1/revoke"' in html
    left = render(
        "admin_provider.html",
        provider=PROVIDER | {"status": "left"},
        history=[],
        credentials=[],
        statuses=domain.PROVIDER_STATUS_WORDS,
    )
    assert "Change the status" not in left  # leaving is final


def test_a_status_change_is_checked_on_its_own_page_before_it_is_made():
    html = render(
        "admin_provider_confirm.html",
        provider=PROVIDER,
        values={"status": "left", "reason": "exit"},
        words=domain.PROVIDER_STATUS_WORDS,
    )
    assert "Check the change before it is made" in html and "This is final" in html
    assert 'name="confirm" value="yes"' in html and 'name="status" value="left"' in html


def test_the_done_banner_shows_only_the_fixed_words_of_what_was_done():
    html = render(
        "admin_provider.html",
        provider=PROVIDER,
        history=[],
        credentials=[],
        statuses=domain.PROVIDER_STATUS_WORDS,
        done=domain.PROVIDER_DONE_WORDS["revoked"],
    )
    assert 'id="done">The credential was revoked.</p>' in html
