"""The portal's history words, its users form's checks and its menu (decisions 0126, 0127): pure
functions of the console (services/console/domain.py, services/console/api/pages.py) and the
providers service's rules (services/providers/domain.py), no I/O."""

from __future__ import annotations

import datetime as dt

from services.console import domain
from services.console.api.pages import navigation
from services.console.handlers import Session
from services.providers import domain as providers


def portal_session(role: str | None) -> Session:
    return Session(
        token_hash=b"x",
        kind="provider",
        csrf_token="t",
        expires_at=dt.datetime.now(dt.UTC),
        username="sam",
        display_name="Sam",
        role=role,
        provider_id="bluebell-care",
    )


def test_a_lost_bid_shows_its_rank_and_never_a_price_and_a_withdrawal_says_why():
    lost = domain.history_words(
        {"answer": "bid", "hourly_rate": "19.95", "outcome": "lost", "rank": 2, "ranked_bids": 3}
    )
    assert lost == {
        "answer": "Bid £19.95 an hour",
        "outcome": "Lost",
        "colour": "orange",
        "detail": "Your bid ranked 2 of 3",
    }
    withdrawn = domain.history_words(
        {"answer": "declined", "decline_reason": "other", "outcome": "closed", "closed_reason": "package_cancelled"}
    )
    assert withdrawn["answer"] == "Declined: Another reason"
    assert withdrawn["detail"] == "Withdrawn: the council cancelled the package" and withdrawn["outcome"] == "Closed"
    assert domain.history_words({"answer": None, "outcome": "unanswered"})["outcome"] == "Not answered in time"
    assert domain.history_words({"answer": "bid", "hourly_rate": "20", "outcome": "won"})["colour"] == "green"


def test_the_outcome_comes_from_the_closing_notice_before_the_offers_own_status():
    assert providers.offer_outcome("bid", "lost", window_closed=True) == "lost"
    assert providers.offer_outcome("won", None, window_closed=True) == "won"
    # A decline is final and gets no notice (decision 0093): never "awaiting the award" (found by a new
    # user: shown so for ever, after the award and after the package went unplaced).
    assert providers.offer_outcome("declined", None, window_closed=False) == "declined"
    assert providers.offer_outcome("declined", None, window_closed=True) == "declined"
    assert providers.offer_outcome("bid", None, window_closed=False) == "awaiting"
    assert providers.offer_outcome("offered", None, window_closed=True) == "unanswered"
    assert providers.offer_outcome("declined", "closed", window_closed=True) == "closed"


def test_a_new_user_is_checked_all_at_once_in_plain_words():
    problems = domain.provider_user_problems({"username": "has space", "name": "", "role": "owner"})
    assert list(problems) == ["username", "name", "role"]
    assert domain.provider_user_problems({"username": "sam@agency.example", "name": "Sam", "role": "staff"}) == {}
    assert domain.provider_user_refusal(409, {"code": "user-exists"}) == {
        "username": "That person is already a provider's user: they must be removed there first"
    }
    assert "yourself" in domain.provider_user_refusal(409, {"code": "own-user"})["status"]
    # The API's 422 names the field (a name with a direction override): shown next to it, not as
    # "could not be made" (found by an attack).
    bidi = {"code": "invalid-request", "errors": [{"field": "name", "detail": "not shown to others"}]}
    assert list(domain.provider_user_refusal(422, bidi)) == ["name"]
    assert "direction" in domain.provider_user_refusal(422, bidi)["name"]
    assert list(domain.provider_user_refusal(422, {"errors": [{"field": "other"}]})) == ["status"]
    assert providers.staff_user_problems("Sam.Carer", "Sam") == {}
    assert set(providers.staff_user_problems(" ", "x" * 201)) == {"username", "name"}
    assert providers.canonical_username("  Sam.Carer ") == "sam.carer"
    assert providers.can_manage_users("admin") and not providers.can_manage_users("staff")
    assert not providers.can_manage_users(None)  # the organisation's API credential manages no one


def test_the_portal_menu_has_the_history_and_for_admin_users_the_users_page_with_the_unread_count():
    staff_menu = [i["href"] for i in navigation(portal_session("provider_staff"), "/portal/offers")]
    assert "/portal/history" in staff_menu and "/portal/users" not in staff_menu
    admin_menu = navigation(portal_session("provider_admin"), "/portal/users", {"/portal/offers": 3})
    assert [i["href"] for i in admin_menu][-1] == "/portal/users"
    assert next(i for i in admin_menu if i["href"] == "/portal/offers")["badge"] == 3
    assert next(i for i in admin_menu if i["href"] == "/portal/users")["current"]
    credential_menu = [i["href"] for i in navigation(portal_session(None), "/portal/offers")]
    assert "/portal/users" not in credential_menu


def test_the_package_page_says_which_providers_named_user_answered():
    """The council's package page (decision 0126): "by <name>" under an answer the providers service
    says a named user gave; nothing for a system's answer."""
    from html import unescape

    from tests.unit.test_console_pages import render

    answer = {"provider_id": "acorn-care", "kind": "bid", "hourly_rate": "19.95", "answered_at": "2026-03-05T10:00:00Z"}
    system = answer | {"provider_id": "oak-care"}
    round_ = {"offer_round": 1, "tier": "prime", "provider_ids": ["acorn-care", "oak-care"], "outcome": "settled"}
    html = unescape(
        render(
            "broker",
            offer_rounds=[round_ | {"answers": [answer, system], "excluded": {}}],
            context={"answered_by": {"acorn-care:1": "Sam Carer"}},
        )
    )
    assert html.count("by Sam Carer") == 1
