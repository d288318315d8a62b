"""The check every test runs on the responses it gets (tests/documented_responses.py) finds what it
is for: a status the document does not list, an error that is not a problem, a problem whose
code, type or status disagree. And the problem types are documented, one table, one page."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from services.runtime import problems
from tests import documented_responses as documented

ROOT = Path(__file__).resolve().parents[2]


def response(method: str, path: str, status: int, body: dict | None = None, ctype: str | None = None) -> httpx.Response:
    request = httpx.Request(method, f"http://127.0.0.1:8001{path}")
    headers = {"content-type": ctype} if ctype else {}
    out = httpx.Response(status, json=body, request=request, headers=headers)
    out.read()
    return out


def a_problem(status: int, code: str | None) -> dict:
    return problems.body(status, "words", code=code)


def test_a_documented_problem_passes():
    body = a_problem(404, "not-found")
    assert (
        documented.problems_with(
            "GET", "/packages/abc", response("GET", "/packages/abc", 404, body, problems.MEDIA_TYPE)
        )
        == []
    )


def test_a_status_the_document_does_not_list_is_found():
    wrong = documented.problems_with(
        "GET",
        "/packages/abc",
        response("GET", "/packages/abc", 418, a_problem(418, None) | {"code": "not-found"}, problems.MEDIA_TYPE),
    )
    assert any("418" in w and "not in the document" in w for w in wrong), wrong


def test_an_error_that_is_not_a_problem_is_found():
    [wrong] = documented.problems_with("GET", "/packages/abc", response("GET", "/packages/abc", 404, {"error": "no"}))
    assert "not application/problem+json" in wrong


def test_a_problem_whose_code_type_or_status_disagree_is_found():
    body = a_problem(404, "not-found") | {"code": "no-such-code"}
    wrong = documented.problems_with(
        "GET", "/packages/abc", response("GET", "/packages/abc", 404, body, problems.MEDIA_TYPE)
    )
    assert any("code 'no-such-code' is not one the document lists" in w for w in wrong), wrong
    body = a_problem(404, "not-found") | {"status": 409}
    [only] = documented.problems_with(
        "GET", "/packages/abc", response("GET", "/packages/abc", 404, body, problems.MEDIA_TYPE)
    )
    assert "status 409 in the body" in only


def test_paths_no_document_has_and_pages_are_not_checked():
    assert (
        documented.problems_with(
            "POST", "/realms/homecare/protocol/openid-connect/token", response("POST", "/realms/x", 400)
        )
        == []
    )
    page = response("GET", "/packages/abc", 404, None, "text/html")
    assert documented.problems_with("GET", "/packages/abc", page) == []


def test_every_problem_type_is_in_the_documents_and_on_the_guide_page():
    assert set(problems.TYPES) <= documented.problem_codes()
    page = (ROOT / "docs" / "guide" / "problems.md").read_text()
    listed = set(re.findall(r"^\| `([a-z-]+)` \| \d{3} \|", page, re.M))
    assert listed == set(problems.TYPES), (
        "docs/guide/problems.md lists exactly the codes of services/runtime/problems.py"
    )
    for kind in problems.TYPES.values():
        assert f"| `{kind.code}` | {kind.status} |" in page, kind.code


def test_a_code_of_another_status_is_refused_where_it_is_raised():
    import pytest

    from services.runtime.http import ProblemError

    with pytest.raises(ValueError, match="offer-closed"):
        ProblemError(422, "words", code="offer-closed")
