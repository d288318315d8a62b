"""The web console's rules: access by role, sessions' lifetimes, the board's deadlines, the package
form's translation to the brokerage API and of its answers back to the form, the charts."""

import datetime as dt
import re

from services.console import charts, domain
from services.console.domain import Permission, Role

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
    "person_nhs_number": "943 476 5919",
    "person_phone": "",
    "person_date_of_birth-day": "",
    "person_date_of_birth-month": "",
    "person_date_of_birth-year": "",
}


def test_a_complete_form_becomes_the_brokerage_apis_request_without_a_requester_field():
    # Who requests is the signed-in staff member the console's call carries, never a body field.
    request, errors = domain.package_request(FORM)
    assert errors == {}
    assert request is not None
    assert request["visits"] == {"calls_per_day": 2, "minutes_per_call": 30, "carers_per_call": 1, "days_per_week": 7}
    assert request["start_date"] == "2026-03-05" and "requested_by" not in request
    assert request["person"] == {
        "full_name": "Ada Example",
        "address": "1 High St",
        "postcode": "LE11 1AA",
        "nhs_number": "943 476 5919",
    }  # blank optional answers are left out


def test_blank_and_malformed_answers_are_the_forms_own_errors_in_the_forms_order():
    form = FORM | {"calls_per_day": "two", "person_full_name": " ", "start_date-month": "13", "needs": []}
    request, errors = domain.package_request(form)
    assert request is None
    assert list(errors) == ["calls_per_day", "needs", "start_date", "person_full_name"]
    assert errors["calls_per_day"] == "Calls a day must be a whole number"
    assert errors["start_date"] == "Start date must be a real date"
    assert errors["person_full_name"] == "Enter the person's full name"


def test_the_apis_field_errors_land_next_to_the_forms_fields():
    problem = {
        "error": "invalid request",
        "fields": [
            {"field": "person.postcode", "message": "Value error, not a UK postcode"},
            {"field": "visits.minutes_per_call", "message": "Input should be greater than or equal to 15"},
            {"field": "body", "message": "Value error, hours_per_week 9 does not match the visit pattern (...)"},
            {"field": "Idempotency-Key", "message": "used before"},
        ],
    }
    by_field, general = domain.errors_from_api(problem)
    assert by_field["person_postcode"] == "Postcode: not a UK postcode"
    assert by_field["minutes_per_call"].startswith("Minutes a call: Input should be greater")
    assert by_field["hours_per_week"].startswith("Hours per week: hours_per_week 9 does not match")
    assert general == ["used before"]
    assert domain.errors_from_api({"error": "no such zone"}) == ({}, ["no such zone"])


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
    # No console role (a provider's staff, the default roles, a service account), or not a list: none.
    for roles in (["provider_staff"], ["default-roles-homecare", "uma_authorization"], ["service"], [], None, "broker"):
        assert domain.role_from_idp(roles) is None
    # Every brokerage-team role acts on packages and sees the person; none of them runs the platform.
    for role in domain.BROKERAGE_TEAM:
        assert domain.can(role, domain.Permission.person) and not domain.can(role, domain.Permission.operations)
        assert domain.HOME[role] == "/board"
