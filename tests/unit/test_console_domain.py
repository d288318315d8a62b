"""The web console's rules: access by role, sessions' lifetimes, the board's deadlines, the package
form's translation to the brokerage API and of its answers back to the form, the charts."""

import datetime as dt
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest

from services.console import charts, domain
from services.console.domain import Permission, Role
from services.runtime import problems

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def test_only_brokers_see_people_and_act_only_ops_and_admins_see_operations_only_admins_manage_staff():
    assert domain.can("broker", Permission.person) and domain.can("broker", Permission.act)
    assert not domain.can("broker", Permission.operations) and not domain.can("broker", Permission.staff)
    for role in ("ops", "admin"):
        assert domain.can(role, Permission.operations) and domain.can(role, Permission.board)
        assert not domain.can(role, Permission.person) and not domain.can(role, Permission.act)
    assert domain.can("admin", Permission.staff) and not domain.can("ops", Permission.staff)
    assert not domain.can("nobody", Permission.board) and not domain.can(None, Permission.board)


def test_a_session_slides_with_use_but_never_past_its_absolute_limit():
    policy = domain.SessionPolicy(idle=dt.timedelta(minutes=30), absolute=dt.timedelta(hours=12))
    assert policy.expires_at(created_at=T0, now=T0) == T0 + dt.timedelta(minutes=30)
    assert policy.expires_at(created_at=T0, now=T0 + dt.timedelta(hours=2)) == T0 + dt.timedelta(hours=2, minutes=30)
    assert policy.expires_at(created_at=T0, now=T0 + dt.timedelta(hours=11, minutes=50)) == T0 + dt.timedelta(hours=12)


def test_passwords_are_judged_by_length():
    assert domain.password_problem("short") is not None
    assert domain.password_problem("a sentence of words") is None


def test_the_board_shows_each_packages_next_deadline_with_the_time_left():
    offered = {"status": "offered", "window_closes_at": T0 + dt.timedelta(hours=3, minutes=20)}
    assert domain.deadline_of(offered, T0) == {
        "what": "window closes",
        "at": offered["window_closes_at"],
        "left": "in 3 h 20 min",
    }
    assert (domain.deadline_of(offered, T0 + dt.timedelta(hours=4)) or {}).get("left") == "now"
    unplaced = {"status": "unplaced", "next_reoffer_at": T0 + dt.timedelta(minutes=7)}
    assert domain.deadline_of(unplaced, T0) == {
        "what": "offered again",
        "at": unplaced["next_reoffer_at"],
        "left": "in 7 min",
    }
    assert domain.deadline_of({"status": "placed", "window_closes_at": None}, T0) is None


def test_a_refused_search_is_explained_in_plain_words():
    assert "name or NHS number" in domain.search_problem(403)
    assert "10 digits" in domain.search_problem(422)


def test_wait_clocks():
    assert domain.waited(T0, T0 + dt.timedelta(seconds=30)) == "under a minute"
    assert domain.waited(T0, T0 + dt.timedelta(minutes=7)) == "7 min"
    assert domain.waited(T0, T0 + dt.timedelta(hours=2, minutes=5)) == "2 h 05 min"
    assert domain.waited(T0, T0 + dt.timedelta(days=3, hours=4)) == "3 d 4 h"


FORM: dict[str, str | list[str]] = {
    "zone": "charnwood-north",
    "band": "urban",
    "postcode_district": "LE11",
    "hours_per_week": "7",
    "calls_per_day": "2",
    "minutes_per_call": "30",
    "carers_per_call": "1",
    "days_per_week": "7",
    "needs": ["personal_care", "medication"],
    "urgency": "community",
    "start_date-day": "5",
    "start_date-month": "3",
    "start_date-year": "2026",
    "funding": "council",
    "person_full_name": "Ada Example",
    "person_address": "1 High St",
    "person_postcode": "LE11 1AA",
    "person_nhs_number": "485 777 3457",
    "person_phone": "",
    "person_date_of_birth-day": "",
    "person_date_of_birth-month": "",
    "person_date_of_birth-year": "",
}


TODAY = dt.date(2026, 3, 1)
ZONES = [
    {"id": "charnwood-north", "name": "Charnwood North", "postcode_districts": ["LE11", "LE12"]},
    {"id": "melton", "name": "Melton", "postcode_districts": ["LE13", "LE14"]},
]


def test_a_complete_form_becomes_the_brokerage_apis_request_without_a_requester_field():
    # Who requests is the signed-in staff member the console's call carries, never a body field.
    request, errors = domain.package_request(FORM, ZONES, today=TODAY)
    assert errors == {}
    assert request is not None
    assert request["visits"] == {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7}
    assert request["start_date"] == "2026-03-05" and "requested_by" not in request
    assert request["person"] == {
        "full_name": "Ada Example",
        "address": "1 High St",
        "postcode": "LE11 1AA",
        "nhs_number": "485 777 3457",
    }  # blank optional answers are left out


def test_blank_and_malformed_answers_are_the_forms_own_errors_in_the_forms_order():
    form = FORM | {"calls_per_day": "two", "person_full_name": " ", "start_date-month": "13", "needs": []}
    request, errors = domain.package_request(form, ZONES, today=TODAY)
    assert request is None
    assert list(errors) == ["calls_per_day", "needs", "start_date", "person_full_name"]
    assert errors["calls_per_day"] == "Calls a day must be a whole number, like 2"
    assert errors["start_date"] == "Start date must be a real date"
    assert errors["person_full_name"] == "Enter the person's full name"


def test_every_problem_is_found_at_once_in_plain_words_in_the_forms_order():
    """Issue 19: an empty postcode, a bad NHS number and a wrong date took three submits; the hours
    against the visits, the district against the zone and the postcode against the district were
    told in the API's words. Now one submit lists them all, as a person would say them."""
    form = FORM | {
        "zone": "melton",
        "postcode_district": "LE11",
        "hours_per_week": "14",
        "start_date-year": "2025",
        "person_postcode": "",
        "person_nhs_number": "943 476 5918",
        "person_phone": "12",
        "person_email": "ada@",
    }
    request, errors = domain.package_request(form, ZONES, today=TODAY)
    assert request is None
    assert errors == {
        "postcode_district": "LE11 is not in Melton: choose the zone it is in, or enter one of LE13, LE14",
        "hours_per_week": "Hours per week must match the visits: 2 calls a day of 30 minutes with 1 carer, "
        "7 days a week is 7 hours",
        "start_date": "Start date must be today or in the future",
        "person_postcode": "Enter the person's postcode",
        "person_phone": "Enter a UK phone number, like 01632 960 001",
        "person_email": "Enter an email address in the correct format, like name@example.com",
        "person_nhs_number": "Enter a real NHS number: check the 10 digits",
    }
    assert list(errors) == [f for f in domain.LABELS if f in errors], "in the form's order"
    for message in errors.values():
        assert "_" not in message and "Input should" not in message and "String should" not in message
    _, errors = domain.package_request(
        FORM | {"person_postcode": "LE12 1AA", "calls_per_day": "9", "hours_per_week": "1.234"}, ZONES, today=TODAY
    )
    assert errors == {
        "hours_per_week": "Hours per week can have up to 2 decimal places, like 10.25",
        "calls_per_day": "Calls a day must be between 1 and 6",
        "person_postcode": "The postcode LE12 1AA is not in LE11: check the postcode and the postcode district",
    }


def test_the_apis_field_errors_are_told_in_the_consoles_words_never_its_own():
    problem = {
        "error": "invalid request",
        "fields": [
            {"field": "person.postcode", "message": "Value error, not a UK postcode"},
            {"field": "visits.minutes_per_call", "message": "Input should be greater than or equal to 15"},
            {"field": "body", "message": "Value error, hours_per_week 9 does not match the visit pattern (...)"},
            {"field": "Idempotency-Key", "message": "<b>used before</b>"},
        ],
    }
    by_field, general = domain.errors_from_api(problem)
    assert by_field == {
        "hours_per_week": "Hours per week must match the visits (calls x minutes x carers x days)",
        "minutes_per_call": "Check the answer to 'Minutes a call'",
        "person_postcode": "Check the postcode: it must be a real postcode in the postcode district",
    }
    assert general == [domain.REFUSED_GENERAL]
    assert domain.errors_from_api({"error": "no such zone"}) == ({}, [domain.REFUSED_GENERAL])


def refused(field: str, code: str | None, words: str = "words the console never reads") -> dict:
    """A brokerage refusal as the API sends it (problem details, services/runtime/problems.py)."""
    return problems.body(422, words, code=code, fields=[{"field": field, "detail": words}])


def test_a_refused_action_is_told_by_its_field_and_problem_code_in_the_consoles_words():
    assert domain.action_refusal("end", 422, refused("effective_date", "date-too-far-back"), "started") == {
        "effective_date": "The first day without care is too far in the past: "
        "the brokerage records dates only a few days back"
    }
    assert domain.action_refusal("change", 422, refused("effective_date", "date-before-start"), "started") == {
        "change_effective_date": "The first day of the new visits must be on or after the day care started"
    }
    assert domain.action_refusal(
        "change", 422, refused("discussed_with_person", "reduction-not-discussed"), "started"
    ) == {"discussed_with_person": domain.NOT_DISCUSSED}
    assert domain.action_refusal("change", 422, refused("visits", "change-changes-nothing"), "started") == {
        "hours_per_week": "Change the hours or the visits: the change leaves them as they are"
    }
    assert domain.action_refusal("resume", 422, refused("resumed_on", "date-before-pause"), "paused") == {
        "resumed_on": f"{domain.DATE_NAMES['resumed_on']} must be on or after the day the pause began"
    }
    assert domain.action_refusal("cancel", 422, refused("reason", None), "unplaced") == {
        "reason": "Select why the package is cancelled"
    }
    assert domain.action_refusal("reoffer", 409, {"error": "package 6f1c is placed"}, "placed") == {
        "status": "This cannot be done now: the package is placed. The page shows it as it is now."
    }
    odd = domain.action_refusal("start", 422, {"fields": [{"field": "nonsense", "message": "<script>"}]}, "placed")
    assert odd == {"status": "This could not be recorded. Check the answers and try again."}


def test_the_console_branches_on_codes_never_on_the_apis_words():
    """The same code in other words reads the same; the old phrase without its code is a plain date problem."""
    a = domain.action_refusal("end", 422, refused("effective_date", "date-in-future", "in the future"), "started")
    b = domain.action_refusal("end", 422, refused("effective_date", "date-in-future", "zukünftig"), "started")
    assert a == b
    phrase_only = domain.action_refusal("end", 422, refused("effective_date", None, "is in the future"), "started")
    assert phrase_only != a
    assert set(domain._REFUSAL_KINDS) <= set(problems.TYPES), "every code the console knows is one the API sends"


def test_an_actions_problems_are_found_before_the_brokerage_is_asked():
    package = {"status": "started", "started_on": "2026-03-05", "package": {"hours_per_week": "7.00"}}
    today = dt.date(2026, 3, 6)
    assert domain.action_problems("hand-back", {}, package=package, today=today) == {
        "notice_ends_on": "Enter the provider's last day of care",
        "reason": "Select why the provider is handing the package back",
    }
    future = {"started_on-day": "7", "started_on-month": "3", "started_on-year": "2026"}
    assert domain.action_problems("start", future, package=package, today=today) == {
        "started_on": "The day care started must be today or in the past"
    }
    assert domain.action_problems("start", future | {"started_on-month": "13"}, package=package, today=today) == {
        "started_on": "The day care started must be a real date"
    }
    fewer = {
        "calls_per_day": "1",
        "minutes_per_call": "30",
        "carers_per_call": "1",
        "days_per_week": "7",
        "hours_per_week": "3.5",
        "reason": "needs_decreased",
        "change_effective_date-day": "9",
        "change_effective_date-month": "3",
        "change_effective_date-year": "2026",
    }
    assert domain.action_problems("change", fewer, package=package, today=today) == {
        "discussed_with_person": domain.NOT_DISCUSSED
    }
    assert (
        domain.action_problems("change", fewer | {"discussed_with_person": "yes"}, package=package, today=today) == {}
    )
    assert domain.action_problems("reoffer", {}, package=package, today=today) == {}


def test_an_above_rate_bid_in_pounds_and_the_signed_in_roles_authority_from_the_scheme_of_delegation():
    record = {
        "exceptions": [
            {"provider_id": "old", "hourly_rate": "30.00", "band_rate": "22.95", "decision": "rejected"},
            {"provider_id": "oak-care", "hourly_rate": "24.50", "band_rate": "22.95", "decision": None},
        ]
    }
    bid = domain.above_rate_of(record, "10.5")
    assert bid is not None and bid.provider_id == "oak-care"
    assert (bid.above_per_hour, bid.weekly_cost, bid.weekly_at_band_rate, bid.weekly_difference) == (
        Decimal("1.55"),
        Decimal("257.25"),
        Decimal("240.98"),
        Decimal("16.27"),
    )
    assert round(bid.above_percent, 1) == Decimal("6.8")
    assert domain.above_rate_of({"exceptions": record["exceptions"][:1]}, "7") is None
    limits = {"broker": "5", "senior_broker": "10", "manager": "15", "head_of_service": None}
    broker = domain.approval_authority(role="broker", username="b1", requested_by="b2", bid=bid, limits=limits)
    assert not broker.may_approve and broker.limit_percent == Decimal(5)
    assert domain.approvers_words(broker.approvers) == "a senior broker, a manager or the head of service"
    senior = domain.approval_authority(role="senior_broker", username="s1", requested_by="b2", bid=bid, limits=limits)
    assert senior.may_approve and senior.within_limit and not senior.own_request
    own = domain.approval_authority(role="head_of_service", username="h1", requested_by="h1", bid=bid, limits=limits)
    assert own.within_limit and own.own_request and not own.may_approve
    assert own.limit_percent is None, "no limit"
    ops = domain.approval_authority(role="ops", username="o1", requested_by="b2", bid=bid, limits=limits)
    assert not ops.listed and not ops.may_approve


def test_a_staff_accounts_problems_are_found_at_once():
    assert domain.staff_problems(username="Bad Name!", display_name=" ", role="", password="short") == {
        "username": "Username must be 2 to 64 lowercase letters, digits, dots, dashes or underscores",
        "display_name": "Enter the person's name",
        "role": "Select a role",
        "password": "Password must be at least 12 characters",
    }
    assert domain.staff_problems(username="ok.name", display_name="Ok", role="broker", password="x" * 12) == {}


def test_a_refused_action_is_told_in_one_line():
    assert domain.refusal({"error": "package is not unplaced"}) == "package is not unplaced"
    assert domain.refusal(
        {
            "error": "invalid request",
            "fields": [
                {"field": "reason", "message": "String should have at least 1 character"},
                {"field": "started_on", "message": "Value error, care cannot have started in the future"},
            ],
        }
    ) == ("String should have at least 1 character; care cannot have started in the future")


def test_a_chart_is_an_image_with_a_title_and_a_description_of_its_figures():
    svg = str(
        charts.bars(
            "c1",
            "Declines by band",
            [("urban", {"capacity": 3, "price": 1}), ("rural", {"capacity": 2})],
            series=["capacity", "price"],
        )
    )
    assert 'role="img"' in svg and 'aria-labelledby="c1-title c1-desc"' in svg
    assert '<title id="c1-title">Declines by band</title>' in svg
    assert "urban: capacity 3, price 1; rural: capacity 2." in svg
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)" height="18"', svg)]
    assert widths == [315.0, 105.0, 210.0]  # scaled to the largest row (4), stacked by series


def test_chart_labels_are_escaped():
    svg = str(charts.bars("c2", "<script>", [("<b>zone</b>", {"x": 1})]))
    assert "<script>" not in svg and "<b>" not in svg


def test_every_role_has_a_start_page():
    assert set(domain.HOME) == set(Role)


def test_a_long_legend_wraps_onto_more_lines_and_the_chart_grows_to_hold_it():
    one = str(charts.bars("c3", "t", [("z", {"a": 1, "b": 2})], series=["a", "b"]))
    many = [f"provider-{i:02d}" for i in range(20)]
    wrapped = str(charts.bars("c4", "t", [("z", {m: 1 for m in many})], series=many))
    legend_rows = {int(y) for y in re.findall(r'<rect x="\d+" y="(\d+)" width="12"', wrapped)}
    assert len(legend_rows) > 1

    def height(svg: str) -> int:
        found = re.search(r'viewBox="0 0 \d+ (\d+)"', svg)
        assert found is not None
        return int(found.group(1))

    assert height(wrapped) > height(one)


def test_the_identity_providers_roles_map_to_the_consoles_with_the_most_deciding_role_first():
    assert domain.role_from_idp(["broker"]) == Role.broker
    assert domain.role_from_idp(["offline_access", "manager", "broker"]) == Role.manager
    assert domain.role_from_idp(["operations"]) == Role.ops
    assert domain.role_from_idp(["council_admin", "operations"]) == Role.admin
    assert domain.role_from_idp(["head_of_service", "council_admin"]) == Role.head_of_service
    # Finance (decision 0109): its own home, the finance pages only - no board, no person.
    assert domain.role_from_idp(["finance"]) == Role.finance and domain.HOME[Role.finance] == "/finance"
    assert domain.role_from_idp(["manager", "finance"]) == Role.manager
    assert domain.can("finance", domain.Permission.finance)
    assert not domain.can("finance", domain.Permission.board) and not domain.can("finance", domain.Permission.person)
    assert domain.can("head_of_service", domain.Permission.finance) and not domain.can(
        "broker", domain.Permission.finance
    )
    # No console role (a provider's staff, the default roles, a service account), or not a list: none.
    for roles in (["provider_staff"], ["default-roles-homecare", "uma_authorization"], ["service"], [], None, "broker"):
        assert domain.role_from_idp(roles) is None
    # Every brokerage-team role acts on packages and sees the person; none of them runs the platform.
    for role in domain.BROKERAGE_TEAM:
        assert domain.can(role, domain.Permission.person) and not domain.can(role, domain.Permission.operations)
        assert domain.HOME[role] == "/board"


def test_a_review_officer_has_the_review_queue_as_home_and_records_reviews_only():
    """Issue 18's review team (decision 0096): the realm role review_officer is the console's
    review_officer, at home on the review queue; it records reviews, never acts otherwise, never sees
    the person, the board or operations; a broker's other role comes first."""
    assert domain.role_from_idp(["review_officer"]) == Role.review_officer
    assert domain.role_from_idp(["review_officer", "broker"]) == Role.broker
    assert domain.HOME[Role.review_officer] == "/reviews"
    assert domain.can("review_officer", Permission.reviews)
    for permission in (Permission.board, Permission.act, Permission.person, Permission.operations, Permission.staff):
        assert not domain.can("review_officer", permission), permission
    for role in domain.BROKERAGE_TEAM:
        assert domain.can(role, Permission.reviews)
    for other in (Role.ops, Role.admin):
        assert not domain.can(other, Permission.reviews), "they follow the queue on the board's rights, record none"


def test_the_decision_page_knows_a_first_approval_a_second_approver_and_two_approvals_beyond_the_threshold():
    """Decision record 0123: the console shows what the brokerage's approval_step would do."""
    first = {
        "approver": "b1",
        "approver_role": "broker",
        "limit_percent": "5.00",
        "within_limit": False,
        "provider_id": "oak-care",
        "hourly_rate": "24.50",
        "step": "first",
        "approved_at": "2026-07-01T09:00:00Z",
    }
    waiting = {"provider_id": "oak-care", "hourly_rate": "24.50", "band_rate": "22.95", "decision": None}
    limits = {"broker": "5", "senior_broker": "10", "manager": "15", "head_of_service": None}
    second = {"first_approval_below_limit": True, "two_approvals_above_percent": "20"}

    def authority(role, user, record, **kw):
        bid = domain.above_rate_of({"exceptions": [record]}, "7")
        assert bid is not None
        return domain.approval_authority(
            role=role,
            username=user,
            requested_by="b9",
            bid=bid,
            limits=limits,
            second_approver=kw.get("second", second),
        )

    # No approval yet: a broker below the limit may record the first of two; a senior broker places it.
    assert authority("broker", "b1", waiting).outcome == "first"
    assert authority("senior_broker", "s1", waiting).outcome == "place"
    # Without second approvers in the scheme, the broker may only refuse (as before).
    assert authority("broker", "b1", waiting, second={}).outcome is None
    # After b1's first approval: b1 never again, another broker no, a senior broker places it.
    approved = waiting | {"approvals": [first]}
    bid = domain.above_rate_of({"exceptions": [approved]}, "7")
    assert bid is not None and [a.approver for a in bid.approvals] == ["b1"]
    again = authority("broker", "b1", approved)
    assert again.already_approved and again.outcome is None
    assert authority("broker", "b2", approved).outcome is None
    senior = authority("senior_broker", "s1", approved)
    assert senior.outcome == "place"
    words = domain.approvers_words(senior.approvers)
    assert domain.still_needed(senior, words) == (
        "A second approval by someone else whose limit covers it: a senior broker, a manager or the head of service."
    )
    # A first approval of another bid does not count for this one.
    other = approved | {"hourly_rate": "25.00"}
    assert domain.above_rate_of({"exceptions": [other]}, "7").approvals == ()  # type: ignore[union-attr]
    # Beyond 20%: two approvals whoever approves, one of them within its limit.
    far = {"provider_id": "oak-care", "hourly_rate": "28.00", "band_rate": "22.95", "decision": None}
    head = authority("head_of_service", "h1", far)
    assert head.approvals_needed == 2 and head.outcome == "first" and head.waits_for == "second_approver"
    assert domain.still_needed(head, "the head of service") == (
        "Two approvals by different people, at least one of them the head of service."
    )
    after_head = far | {"approvals": [first | {"approver": "h1", "approver_role": "head_of_service",
                                               "limit_percent": None, "within_limit": True,
                                               "hourly_rate": "28.00"}]}  # fmt: skip
    assert authority("broker", "b1", after_head).outcome == "place"
    assert domain.limit_words(None) == "no limit" and domain.limit_words("5.00") == "up to 5% above the band rate"


# ---- the discharge block of the request form (decision records 0097, 0120) -------------------------

HOSPITALS = {
    "hospitals": [{"code": "uhl-lri", "name": "Leicester Royal Infirmary", "wards": ["W17", "AMU"]}],
    "pathways": [
        {"pathway": 0, "means": "home with no new support", "route": "nothing to broker", "brokered": False},
        {"pathway": 1, "means": "home with support", "route": "home care", "brokered": True},
        {"pathway": 2, "means": "a bedded rehabilitation setting", "route": "the Hub books a bed", "brokered": False},
        {"pathway": 3, "means": "a care home", "route": "the placements team", "brokered": False},
    ],
}
DISCHARGE: dict[str, str | list[str]] = {
    "urgency": "hospital_discharge",
    "discharge_hospital": "uhl-lri",
    "discharge_ward": "w17",
    "discharge_pathway": "1",
    "discharge_medically_fit_on-day": "4",
    "discharge_medically_fit_on-month": "3",
    "discharge_medically_fit_on-year": "2026",
    "discharge_reablement_potential": "yes",
    "discharge_nhs_funded_weeks": "2",
}


def test_a_hospital_discharge_form_becomes_the_requests_discharge_block():
    request, errors = domain.package_request(FORM | DISCHARGE, ZONES, today=TODAY, discharge=HOSPITALS)
    assert errors == {} and request is not None
    assert request["discharge"] == {
        "hospital": "uhl-lri",
        "ward": "W17",
        "pathway": 1,
        "medically_fit_on": "2026-03-04",
        "reablement_potential": True,
        "nhs_funded_weeks": 2,
    }
    community, errors = domain.package_request(FORM, ZONES, today=TODAY, discharge=HOSPITALS)
    assert errors == {} and community is not None and "discharge" not in community


def test_a_discharge_without_its_answers_or_on_another_pathway_is_the_forms_own_error_in_plain_words():
    blank: dict[str, str | list[str]] = {k: "" for k in DISCHARGE if k != "urgency"}
    _, errors = domain.package_request(FORM | DISCHARGE | blank, ZONES, today=TODAY, discharge=HOSPITALS)
    assert errors == {
        "discharge_hospital": "Select the hospital",
        "discharge_ward": "Enter the ward code",
        "discharge_pathway": "Select the discharge pathway",
        "discharge_medically_fit_on": "Enter the date the person is medically fit",
    }
    _, errors = domain.package_request(
        FORM | DISCHARGE | {"discharge_pathway": "3", "discharge_ward": "W99", "discharge_medically_fit_on-day": "6"},
        ZONES,
        today=TODAY,
        discharge=HOSPITALS,
    )
    assert errors == {
        "start_date": "Start date must be on or after the date the person is medically fit",
        "discharge_ward": "W99 is not a ward of Leicester Royal Infirmary: enter one of W17, AMU",
        "discharge_pathway": "Pathway 3 is a care home, not care at home: the placements team",
    }
    # Discharge answers with another urgency: the two go together.
    _, errors = domain.package_request(FORM | DISCHARGE | {"urgency": "community"}, ZONES, today=TODAY)
    assert errors == {"urgency": "Select Hospital discharge as the urgency, or remove the hospital discharge answers"}


def test_the_apis_discharge_fields_map_to_the_forms_questions():
    assert domain.form_field("discharge.pathway") == "discharge_pathway"
    assert domain.form_field("discharge.medically_fit_on") == "discharge_medically_fit_on"
    assert domain.form_field("discharge") == "discharge_hospital"


def test_the_answers_are_listed_for_checking_in_words_in_the_forms_order():
    """Decision record 0132: the check-your-answers page lists every answer by section, codes in
    words, dates as people write them, a blank optional answer as "Not given"; the hospital
    discharge's section only with that urgency."""
    sections = domain.check_answers(FORM, ZONES, HOSPITALS)
    assert [title for title, _ in sections] == ["Where", "The care", "The person"]
    rows = {field: (label, words) for _, section in sections for field, label, words in section}
    order = [field for _, section in sections for field, _, _ in section]
    assert order[:3] == ["zone", "postcode_district", "band"] and order[-1] == "person_care_notes"
    assert rows["zone"] == ("Zone", "Charnwood North")
    assert rows["carers_per_call"][1] == "One carer" and rows["urgency"][1] == "Community"
    assert rows["needs"][1] == "Personal care, Medication"
    assert rows["start_date"] == ("Start date", "5 March 2026")
    assert rows["funding"][1] == "Council"
    assert rows["person_phone"][1] == rows["person_date_of_birth"][1] == "Not given"
    assert rows["person_nhs_number"][1] == "485 777 3457"
    discharge = domain.check_answers(FORM | DISCHARGE, ZONES, HOSPITALS)
    assert [title for title, _ in discharge] == ["Where", "The care", "Hospital discharge", "The person"]
    words = {field: words for _, section in discharge for field, _, words in section}
    assert words["discharge_hospital"] == "Leicester Royal Infirmary"
    assert words["discharge_pathway"].startswith("1: ")
    assert words["discharge_medically_fit_on"] == "4 March 2026"
    assert words["discharge_reablement_potential"].startswith("Yes")
    assert [domain.answer_target(f) for f in ("start_date", "zone", "needs")] == ["start_date-day", "zone", "needs"]


def test_the_answers_travel_in_hidden_fields_without_the_csrf_token_or_the_change_button():
    carried = domain.carried_answers(FORM | {"csrf_token": "t", "change": "zone", "idempotency_key": "k"})
    assert ("needs", "personal_care") in carried and ("needs", "medication") in carried
    assert ("idempotency_key", "k") in carried and ("person_phone", "") in carried
    assert not {name for name, _ in carried} & {"csrf_token", "change"}
    # What is carried is the form again: the same request when it is sent.
    again: dict[str, Any] = {}
    for name, value in carried:
        if name == "needs":  # a checkbox group: a list, as the console's form reader gives it
            again.setdefault(name, []).append(value)
        else:
            again[name] = value
    assert domain.package_request(again, ZONES, today=TODAY) == domain.package_request(FORM, ZONES, today=TODAY)


def test_the_new_package_forms_idempotency_key_is_a_uuid_the_console_made_or_a_fresh_one():
    """An attack sent the hidden field as "€uro" (a 500: no such header can be sent) and with a
    newline (a 503): a key the console did not make is replaced, never sent on."""
    made = "6f1c2a52-8c1e-4a55-9d6b-1f6f0c1d2e3a"
    assert domain.form_idempotency_key(made) == made
    assert domain.form_idempotency_key(made.upper()) == made
    for forged in ("€uro", "line\nbreak", "a b", "x" * 300, "", None, f"{made}\n"):
        key = domain.form_idempotency_key(forged)
        assert key != forged and str(uuid.UUID(key)) == key
    assert domain.form_idempotency_key("€uro") != domain.form_idempotency_key("€uro")  # fresh each time


@pytest.mark.parametrize(("field", "chosen"), [("urgency", "standard"), ("band", "suburban"), ("funding", "lottery")])
def test_a_choice_not_on_the_forms_list_is_a_problem_before_the_check_page(field, chosen):
    """Found by an attack: urgency=standard passed the console's checks and was shown as an answer,
    and only the brokerage refused it ("Select the urgency") after Send."""
    body, errors = domain.package_request(FORM | {field: chosen}, ZONES, today=TODAY)
    assert body is None and errors[field] == domain.REQUIRED[field]
    assert domain.package_request(FORM, ZONES, today=TODAY)[0] is not None


def test_words_with_characters_that_do_not_show_are_the_forms_own_error_before_the_check_page():
    """Decision 0156: the brokerage refuses a name, an address or care notes holding characters
    that hide or reorder text (a zero-width space pasted from a letter, a right-to-left override);
    the form says so next to the field before the check page, and keeps line breaks in an address."""
    form = FORM | {
        "person_full_name": "Ada\u200bExample",
        "person_address": "1 High St\u202e",
        "person_care_notes": "Ring\u2028twice",
    }
    body, errors = domain.package_request(form, ZONES, today=TODAY)
    assert body is None
    assert list(errors) == ["person_full_name", "person_address", "person_care_notes"]
    assert errors["person_address"] == (
        "The answer to 'Address' has characters that do not show, often pasted in with the words: type it again"
    )
    body, errors = domain.package_request(FORM | {"person_address": "1 High St\r\nLoughborough"}, ZONES, today=TODAY)
    assert errors == {} and body is not None and body["person"]["address"] == "1 High St\r\nLoughborough"
    refused = domain.action_problems(
        "cancel", {"reason": "no_longer_needed", "reason_text": "see \u202eletter"}, package={}, today=TODAY
    )
    assert list(refused) == ["reason_text"] and refused["reason_text"].startswith(
        "The answer to 'Notes' has characters"
    )


def test_a_value_in_an_apis_path_is_one_segment():
    """Found by an attack: the console's /quality/providers/%3Fx called the providers service's
    /providers/?x/quality, another address (its redirect taken as a page)."""
    from services.console.clients import segment

    assert segment("?x") == "%3Fx" and segment("../a") == "..%2Fa" and segment("a#b") == "a%23b"
    assert segment("bluebell-care") == "bluebell-care"


def test_calls_a_day_is_a_whole_number_from_1_to_6_or_the_forms_message():
    assert domain.calls_a_day("3") == (3, None)
    for typed in ("-1", "0", "7", "2.5", "two", "\u0663"):  # the last: an Arabic-Indic three
        number, problem = domain.calls_a_day(typed)
        assert number is None and problem == "Enter a whole number of calls a day, from 1 to 6", typed


def test_the_profile_forms_refusals_are_said_in_the_forms_words():
    below = {"code": "capacity-below-commitments", "fields": [{"field": "weekly_capacity_hours", "message": "x"}]}
    assert domain.profile_refusal(below) == {
        "weekly_capacity_hours": "Capacity cannot go below the hours you have committed and held for bids"
    }
    typed = {"code": "invalid-request", "fields": [{"field": "call_times.0", "message": "Input should be 'morning'"}]}
    assert domain.profile_refusal(typed) == {"call_times": "Choose call times from the list"}
    assert "Input should" not in str(domain.profile_refusal({"error": "Input should be a valid integer"}))
