"""Whole numbers typed by people, read by one rule (services/runtime/numbers.py, decision 0154).

Found by the kind: ``str.isdigit()`` then ``int()`` - in the console's forms and query strings, the
CLI's ``--period``, the HTTP edge's Content-Length and the dead letters' value size - took
superscripts ("²": int() raises, a 500) and other scripts' digits ("١٢": read as 12). Every
member is tried here with those inputs."""

from __future__ import annotations

import datetime as dt

import pytest
import typer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.cli.operations import _period_days
from services.console import domain
from services.runtime.dead_letters import DeadLetter
from services.runtime.http import EdgeMiddleware
from services.runtime.numbers import MAX_DIGITS, whole_number

NOT_NUMBERS = ["²", "1²", "١٢", "１２", "12.0", "+3", "-3", "3 4", "", " ", "1" * (MAX_DIGITS + 1), "9" * 5000]


def test_a_whole_number_is_written_in_0_to_9_alone():
    typed = ("0", "12", " 7 ", "007", "9" * MAX_DIGITS)
    assert [whole_number(t) for t in typed] == [0, 12, 7, 7, int("9" * MAX_DIGITS)]
    for text in NOT_NUMBERS:
        assert whole_number(text) is None, text


@pytest.mark.parametrize("typed", ["²", "١", "9" * 5000])
def test_a_visit_field_not_in_0_to_9_is_a_form_message_in_both_forms(typed):
    """The new-package form and the change form share the check; before, "²" raised ValueError."""
    number, problem = domain.visit_number("calls_per_day", typed)
    assert number is None and problem and "whole number" in problem
    assert domain.visit_number("calls_per_day", "2") == (2, None)


@pytest.mark.parametrize("typed", ["²", "١٢", "9" * 5000])
def test_a_count_not_in_0_to_9_goes_to_the_api_as_typed_so_its_422_names_the_field(typed):
    assert domain.number_or_text(typed) == typed
    assert domain.number_or_text(" 12 ") == 12


@pytest.mark.parametrize("bad", ["²d", "١٢d", "9" * 5000 + "d", " 3d"[:-1] + "²w"])
def test_a_kpi_period_in_other_digits_names_the_option(bad):
    with pytest.raises(typer.BadParameter, match=r"365d or 52w"):
        _period_days(bad)


@pytest.mark.parametrize("length", ["²", "١٢", "9" * 5000, "-1"])
async def test_a_content_length_not_in_0_to_9_is_refused_not_a_crash(length):
    async def echo(request: Request):
        return JSONResponse({"length": len(await request.body())})

    app = EdgeMiddleware(Starlette(routes=[Route("/echo", echo, methods=["POST"])]), max_bytes=100)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", length.encode())],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("edge", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 413


def test_a_dead_letters_value_size_in_other_digits_reads_as_unknown():
    letter = DeadLetter.from_record(None, b"x", {"x-dlq-value-size": "²", "x-dlq-attempts": "1"})
    assert letter.value_size is None


@pytest.mark.parametrize("typed", ["²", "١٢", "9" * 5000])
def test_a_page_number_or_a_review_window_in_other_digits_is_the_default(typed):
    """The board's and the disclosure log's ?page=, the review queue's ?within= (before: a 500)."""
    assert domain.page_number(typed) == 1 and domain.page_number("3") == 3 and domain.page_number("0") == 1
    assert domain.page_number("99999") == domain.LAST_PAGE
    assert domain.review_window_days(typed) is None and domain.review_window_days("14") == 14
    assert domain.disclosure_filters({"page": typed})[0]["offset"] == 0


@pytest.mark.parametrize("typed", ["²", "١٢"])
def test_the_change_review_and_funding_forms_send_other_digits_as_typed(typed):
    from services.console.api.brokers import _change_body
    from services.console.api.reviews import funding_body, review_body

    assert _change_body({"calls_per_day": typed})["visits"]["calls_per_day"] == typed
    assert (
        review_body({"outcome": "changed", "minutes_per_call": typed})["change"]["visits"]["minutes_per_call"] == typed
    )
    ticked = funding_body({"funder_1": "council", "calls_1": [typed, "2"], "call_funder_1": "nhs_discharge"})
    assert ticked["periods"][0]["calls"] == [{"call": 2, "funder": "nhs_discharge"}]


@pytest.mark.parametrize("rate", ["١٩.٩٥", "１９.９５", "19.9５"])
def test_a_portal_bids_rate_in_other_digits_is_a_form_message(rate):
    """The same rule for the one decimal the console checks by pattern (\\d was any script's digit)."""
    assert "rate" in domain.portal_answer_problems("bid", {"rate": rate})
    assert "rate" not in domain.portal_answer_problems("bid", {"rate": "19.95"})


@pytest.mark.parametrize("typed", ["²", "١٢", "9" * 5000, "1e2", "nan", "-3"])
def test_a_date_box_or_the_kpi_period_in_anything_but_0_to_9_is_not_read(typed):
    assert domain.date_from_parts(typed, "3", "2026") is None
    assert domain.date_from_parts("1", "3", typed) is None
    assert domain.kpi_period_days(typed) == 7.0
    assert domain.date_from_parts(" 01 ", "3", "2026") == dt.date(2026, 3, 1)
    assert (domain.kpi_period_days("30"), domain.kpi_period_days("0.5"), domain.kpi_period_days("999")) == (
        30,
        0.5,
        366,
    )


@pytest.mark.parametrize("hours", ["٧", "７.００", "1_0", "1e1"])
def test_hours_in_other_digits_or_notations_are_a_form_message_in_both_forms(hours):
    new = domain.package_request({"hours_per_week": hours}, today=dt.date(2026, 12, 3))
    assert "Hours per week must be a number" in new[1].get("hours_per_week", ""), new[1]
    visits = {"calls_per_day": "1", "minutes_per_call": "60", "carers_per_call": "1", "days_per_week": "7"}
    change = domain.action_problems(
        "change", visits | {"hours_per_week": hours}, package={"status": "started"}, today=dt.date(2026, 12, 3)
    )
    assert change.get("hours_per_week") == "Hours per week must be a number, like 10.5", change


def test_carer_hours_read_the_same_wherever_they_are_shown():
    """A request keeps its hours as written: "7.00" and "7" were shown as written, so the same
    package read "7.00 hours" in one message and "7 hours" in another (services/runtime/numbers.py)."""
    from decimal import Decimal

    from services.runtime.numbers import hours_text

    shown = [Decimal("7.00"), Decimal("7"), Decimal("10.50"), Decimal("7.25"), Decimal("100"), Decimal("0.5"), "12.0"]
    assert [hours_text(h) for h in shown] == ["7", "7", "10.5", "7.25", "100", "0.5", "12"]
    assert [hours_text(v) for v in ("not hours", None, Decimal("NaN"))] == ["not hours", "None", "NaN"]
