"""Hostile requests at every service's HTTP edge, on the real apps (built as in production, no
database: every refusal here happens before a handler runs). Each is a kind found by an attack on
the APIs (decision 0129), tried on every service that has a member of the kind:

- a value PostgreSQL cannot store (a NUL, a lone surrogate; NaN, Infinity) in any JSON body is a
  422 problem naming the field, never the database's words;
- an address no route has is a 404 problem and a method an address does not take a 405 problem
  with ``Allow``, on every service (the console answers its GOV.UK "Page not found");
- a set-like list (zones, bands, skills, needs, channels, call slots) with a member twice is a
  422 naming the list.
- JSON nested deeper than Python's parser goes (5,000 brackets), with or without a NaN, and a
  cursor made of it, are a 4xx, never a 500 (RecursionError is the parser's refusal too).
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import typing
from typing import Any, cast

import asyncpg
import httpx
import pytest
from starlette.requests import Request

from services.runtime import http, permissions, problems
from services.runtime.settings import SERVICES, ServiceName, load
from tests import local_issuer

ROLE_OF = {"brokerage": "broker", "providers": "broker", "notifications": "broker", "reporting": "broker"}


@functools.cache
def _built(name: str) -> Any:
    return importlib.import_module(f"services.{name}.app").build(
        load(cast(ServiceName, name), **local_issuer.settings())
    )[1]


@pytest.fixture
def app_of(monkeypatch):
    """Each service's app, built once (trusting the tests' own issuer)."""
    local_issuer.serve_keys(monkeypatch)
    return _built


def client(app: Any, name: str, roles: tuple[str, ...] = ("broker",)) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=f"http://{name}",
        headers=local_issuer.headers(name, roles=roles),
    )


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == problems.MEDIA_TYPE
    body = response.json()
    assert (body["status"], body["code"], body["type"]) == (status, code, problems.TYPE_PREFIX + code)
    return body


# One POST per service whose body has free text, and the field to poison.
TEXT_FIELDS: dict[str, tuple[str, dict[str, Any], str]] = {
    "providers": ("/concerns", {"subject": {"provider_id": "p-1"}, "category": "neglect", "details": "x"}, "details"),
    "brokerage": ("/packages", {"zone": "melton", "band": "urban"}, "zone"),
    "notifications": ("/recipients/broker/amy", {"name": "Amy"}, "name"),
}


@pytest.mark.parametrize("name", sorted(TEXT_FIELDS))
@pytest.mark.parametrize(
    ("value", "words"),
    [("before\u0000after", "NUL"), ("\ud800 alone", "surrogate")],
    ids=["nul", "lone-surrogate"],
)
async def test_text_no_database_can_store_is_refused_naming_the_field(app_of, name, value, words):
    path, body, field = TEXT_FIELDS[name]
    poisoned = json.dumps(body | {field: value})  # ensure_ascii: the escapes \u0000, \ud800 on the wire
    async with client(app_of(name), name) as api:
        method = "PUT" if name == "notifications" else "POST"
        answer = await api.request(method, path, content=poisoned, headers={"content-type": "application/json"})
    found = assert_problem(answer, 422, "invalid-request")
    assert [e["field"] for e in found["errors"]] == [field]
    assert words in found["errors"][0]["detail"]
    for database_words in ("invalid byte sequence", "UTF8", "0x00", "asyncpg", "character not in repertoire"):
        assert database_words not in answer.text


@pytest.mark.parametrize("name", sorted(TEXT_FIELDS))
@pytest.mark.parametrize("body", [b"{", b'{"a": 1,}', b"not json", b'{"a": "b"'])
async def test_a_body_that_is_not_json_is_refused_naming_the_body(app_of, name, body):
    """Found by an attack: ``{`` was a 422 naming the field "1" (the parser's character position)."""
    path, _, _ = TEXT_FIELDS[name]
    method = "PUT" if name == "notifications" else "POST"
    async with client(app_of(name), name) as api:
        answer = await api.request(method, path, content=body, headers={"content-type": "application/json"})
    found = assert_problem(answer, 422, "invalid-request")
    assert [e["field"] for e in found["errors"]] == ["body"], found


async def test_a_nul_in_a_nested_member_or_a_list_is_named_by_its_path_and_nan_is_refused(app_of):
    async with client(app_of("providers"), "providers") as api:
        answer = await api.post(
            "/applications",
            content=b'{"zones": ["melton", "a\\u0000"], "adapter": {"premium_percent": {"urban": NaN}}}',
            headers={"content-type": "application/json"},
        )
    fields = {e["field"] for e in assert_problem(answer, 422, "invalid-request")["errors"]}
    assert fields == {"zones.1", "adapter.premium_percent.urban"}


@pytest.mark.parametrize("name", sorted(TEXT_FIELDS))
@pytest.mark.parametrize(
    ("number", "words"),
    [
        ("19.999999999999999999", "would be read as 20.0"),  # was read as 20: a bid of 19.99... became 20.00
        ("0.1000000000000000055511151231257827", "would be read as 0.1"),
        ("1e400", "too large"),  # was read as infinity
        ("-1e-400", "would be read as -0.0"),
        ("9" * 5000, "5,000 digits"),  # was a 400 naming nothing: Python reads 4,300 digits at most
        ("1e-99999999999999999999999", "exponent beyond"),  # these three were 500s: Decimal refused them
        ("-0.0e-99999999999999999999", "exponent beyond"),
        ("0e99999999999999999999", "exponent beyond"),
    ],
    ids=["many-decimals", "float-noise", "overflow", "underflow", "too-many-digits", "tiny", "negative-zero", "zero"],
)
async def test_a_json_number_a_float_cannot_hold_as_written_is_refused_naming_the_field(app_of, name, number, words):
    """Decision 0156: the services' JSON parser reads a number with a fraction as a float, so a
    number with more digits than a float keeps was silently another number; a string keeps them."""
    path, body, _ = TEXT_FIELDS[name]
    sent = json.dumps(body)[:-1] + f', "weekly_capacity_hours": [{number}]}}'
    async with client(app_of(name), name) as api:
        method = "PUT" if name == "notifications" else "POST"
        answer = await api.request(method, path, content=sent, headers={"content-type": "application/json"})
    found = assert_problem(answer, 422, "invalid-request")
    assert [e["field"] for e in found["errors"]] == ["weekly_capacity_hours.0"]
    assert words in found["errors"][0]["detail"]


@pytest.mark.parametrize(
    "number",
    ["19.999999999999999", "450.99999999999999", "699999999.99999999e-8", "49999999.999999999e-7", "1E+400"],
)
def test_a_number_split_by_its_point_or_with_an_exponent_is_read_at_the_edge_too(number):
    """Found by an attack: the edge looked for 16 digits in a row or a three-digit exponent, so
    19.999999999999999 (15 after the point) was a bid of 20.00."""
    [found] = http.unstorable_fields(b'{"rate": ' + number.encode() + b"}")
    assert found["field"] == "rate"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
async def test_a_json_body_in_another_encoding_than_utf8_is_refused(app_of, encoding):
    """Found by an attack: Python's parser reads UTF-16 and UTF-32 JSON too, where the edge's
    checks, reading bytes, saw nothing: a NUL reached PostgreSQL and 19.999999999999999999 was 20."""
    body = '{"name": "Amy", "weekly_capacity_hours": 450.999999999999999999}'.encode(encoding)
    async with client(app_of("notifications"), "notifications") as api:
        answer = await api.put("/recipients/broker/amy", content=body, headers={"content-type": "application/json"})
    assert_problem(answer, 400, "bad-request")
    assert "UTF-8" in answer.json()["detail"]


async def test_a_path_that_takes_a_file_takes_no_json(app_of):
    async with client(app_of("providers"), "providers", roles=("contracts_quality",)) as api:
        answer = await api.post("/quality/cqc-imports", json={"rows": []})
    assert_problem(answer, 415, "unsupported-media-type")


def test_numbers_a_float_holds_and_long_runs_of_digits_in_text_pass_the_edge():
    plain = b'{"rate": 19.95, "hours": 1e2, "nhs": "1234567890123456", "n": 12345678901234567}'
    assert http.unstorable_fields(plain) == []
    assert http.unstorable_fields(b'{"rate": 19.950000000000000000}') == []  # the same number, written longer


async def test_a_persons_address_with_a_bidirectional_override_is_refused_naming_it(app_of):
    """Decision 0156: words a person typed are shown to others (the winning provider reads the
    address); a character that reorders or hides text is a 422 naming the field."""
    async with client(app_of("brokerage"), "brokerage") as api:
        answer = await api.post("/packages", json={"person": {"address": "12 Mill Lane ‮LE11"}})
    errors = {e["field"]: e["detail"] for e in assert_problem(answer, 422, "invalid-request")["errors"]}
    assert "U+202E" in errors["person.address"], errors


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize("name", sorted(TEXT_FIELDS))
async def test_json_nested_deeper_than_the_parser_goes_is_a_4xx_with_or_without_nan(app_of, name):
    """Found by an attack: ``{"x": "NaN", "y": [[[...5,000...]]]}`` was a 500 on every service,
    without a token (the edge's NaN check parsed it and met Python's recursion limit)."""
    path, _, _ = TEXT_FIELDS[name]
    method = "PUT" if name == "notifications" else "POST"
    async with client(app_of(name), name) as api:
        for body in (b'{"x": "NaN", "y": ' + DEEP + b"}", b'{"y": ' + DEEP + b"}"):
            answer = await api.request(method, path, content=body, headers={"content-type": "application/json"})
            assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text[:200])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_of(name)), base_url=f"http://{name}") as anyone:
        answer = await anyone.request(method, path, content=b'{"x": NaN, "y": ' + DEEP + b"}")
        assert 400 <= answer.status_code < 500, (name, answer.status_code)


async def test_the_console_answers_json_nested_too_deep_without_a_500(app_of):
    transport = httpx.ASGITransport(app=app_of("console"), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as console:
        # An address no page has: the edge runs first (the pages themselves need the database).
        answer = await console.post(
            "/no-such-page", content=b'{"x": "NaN", "y": ' + DEEP + b"}", headers={"content-type": "application/json"}
        )
        assert answer.status_code == 404 and "Page not found" in answer.text


def test_the_edge_finds_nan_as_deep_as_the_parser_goes():
    """The edge walks a document with a stack of its own: a NaN 900 lists down is still named."""
    found = http.unstorable_fields(b'{"a": ' + b"[" * 900 + b"NaN" + b"]" * 900 + b"}")
    assert [e["field"] for e in found] == ["a." + ".".join(["0"] * 900)]
    assert http.unstorable_fields(b'{"x": NaN, "y": ' + DEEP + b"}") == []  # validation refuses it instead


def test_a_cursor_nested_deeper_than_the_parser_goes_is_a_422_naming_it():
    import base64

    from services.runtime import pagination

    deep = base64.urlsafe_b64encode(DEEP).decode().rstrip("=")
    with pytest.raises(http.ProblemError) as refused:
        pagination.decode(deep, int)
    assert refused.value.status == 422 and refused.value.field == "cursor"
    arabic = base64.urlsafe_b64encode('["١٢"]'.encode()).decode().rstrip("=")  # int() reads it as 12
    with pytest.raises(http.ProblemError):
        pagination.decode(arabic, int)
    plain = base64.urlsafe_b64encode(b'["12"]').decode().rstrip("=")
    assert pagination.decode(plain, int) == (12,)


async def test_a_pair_of_surrogates_is_text_and_passes_the_edge():
    assert http.unstorable_fields(b'{"details": "\\ud83d\\ude00 fine"}') == []
    assert http.unstorable_fields(b'{"details": "a \\\\u0000 typed as six characters"}') == []


async def test_the_database_s_own_words_never_reach_a_response():
    scope = {"type": "http", "method": "POST", "path": "/concerns", "headers": [], "query_string": b""}
    error = asyncpg.exceptions.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00')
    answer = await http._bad_value(Request(scope), error)
    assert answer.status_code == 422
    assert b"UTF8" not in answer.body and b"0x00" not in answer.body and b"invalid byte" not in answer.body


async def test_a_write_stopped_by_a_unique_index_is_a_409_that_names_no_constraint():
    """Two requests doing the same at once: the second's unique violation is a 409 (it had been a 500,
    found by an attack), and the index's and table's names stay in the log."""
    scope = {"type": "http", "method": "POST", "path": "/me/change-requests", "headers": [], "query_string": b""}
    error = asyncpg.exceptions.UniqueViolationError(
        'duplicate key value violates unique constraint "change_requests_one_pending"'
    )
    answer = await http._same_moment(Request(scope), error)
    assert answer.status_code == 409 and json.loads(bytes(answer.body))["code"] == "conflict"
    assert b"change_requests" not in answer.body and b"duplicate key" not in answer.body


@pytest.mark.parametrize("name", SERVICES)
async def test_an_unknown_address_and_a_wrong_method_are_problems(app_of, name):
    async with client(app_of(name), name) as api:
        missing = await api.get("/no-such-route")
        wrong_method = await api.delete("/asyncapi.json")
    assert_problem(missing, 404, "not-found")
    assert_problem(wrong_method, 405, "method-not-allowed")
    assert wrong_method.headers["allow"] == "GET"


async def test_the_console_answers_an_unknown_address_with_its_page(app_of):
    app = app_of("console")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as console:
        answer = await console.get("/no-such-page")
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert "Page not found" in answer.text


APPLICATION = {
    "provider_id": "oakfield-care",
    "name": "Oakfield",
    "zones": ["melton"],
    "bands": ["urban"],
    "skills": ["personal_care"],
    "weekly_capacity_hours": "120",
    "cqc_location_id": "1-123456789",
    "tender_reference": "LCC-1",
    "received_on": "2026-01-05",
}
# (service, method, path, roles, body with a repeat, the list named)
REPEATS = [
    (
        "providers",
        "POST",
        "/applications",
        ("contracts_quality",),
        APPLICATION | {"zones": ["melton", "melton"]},
        "zones",
    ),
    (
        "providers",
        "POST",
        "/applications",
        ("contracts_quality",),
        APPLICATION | {"bands": ["urban", "urban"]},
        "bands",
    ),
    (
        "providers",
        "POST",
        "/applications",
        ("contracts_quality",),
        APPLICATION | {"skills": ["personal_care", "personal_care"]},
        "skills",
    ),
    (
        "providers",
        "PUT",
        "/providers/p-1/adapter",
        ("council_admin",),
        {"kind": "automatic", "call_times": ["tea", "tea"]},
        "call_times",
    ),
    ("providers", "PATCH", "/providers/p-1/adapter", ("council_admin",), {"call_times": ["bed", "bed"]}, "call_times"),
    (
        "notifications",
        "PUT",
        "/recipients/broker/amy",
        ("council_admin",),
        {"channels": ["email", "email"]},
        "channels",
    ),
    (
        "notifications",
        "PUT",
        "/recipients/broker/amy",
        ("council_admin",),
        {"opted_out": ["package_unplaced", "package_unplaced"]},
        "opted_out",
    ),
]


@pytest.mark.parametrize(("name", "method", "path", "roles", "body", "field"), REPEATS)
async def test_a_set_like_list_with_a_member_twice_is_refused_naming_it(app_of, name, method, path, roles, body, field):
    async with client(app_of(name), name, roles) as api:
        answer = await api.request(method, path, json=body)
    found = assert_problem(answer, 422, "invalid-request")
    assert field in [e["field"] for e in found["errors"]], found
    assert "given twice" in answer.text


async def test_a_console_form_with_a_nul_is_refused_with_a_page_naming_the_field(monkeypatch):
    local_issuer.serve_keys(monkeypatch)
    from services.console.app import build

    _, app = build(load("console", local_accounts=True, cookie_secure=False))  # plain HTTP here
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as console:
        form = await console.get("/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text
        answer = await console.post(
            "/sign-in", data={"csrf_token": token.group(1), "username": "amy\u0000", "password": "x"}
        )
    assert answer.status_code == 400 and answer.headers["content-type"].startswith("text/html")
    assert "username" in answer.text and "NUL" in answer.text


@pytest.mark.parametrize(
    "name",
    [
        "\u200b",
        "Name\u202eevil",
        "a\u2066b",
        "tab\there",
        "\u3164",
        "\u2800",
        "\uffa0",
        "\u115f\u1160",
        "\u0300\u0301",
        "Bob\u2028Admin",
        "Bob\u034f",
    ],
)
def test_a_name_shown_to_others_with_no_visible_character_or_a_reordering_one_is_refused(name):
    """Found by an attack: a staff user named just a zero-width space, or with a right-to-left
    override, was shown as "answered by" on the council's package page; a second one, fillers
    (Hangul, Braille blank), marks alone and a line separator."""
    from pydantic import BaseModel, ValidationError

    from services.notifications.api import RecipientIn
    from services.providers.api import StaffUserRequest

    models: list[tuple[type[BaseModel], dict[str, Any]]] = [
        (StaffUserRequest, {"username": "amy"}),
        (RecipientIn, {}),
    ]
    for model, rest in models:
        with pytest.raises(ValidationError) as refused:
            model.model_validate(rest | {"name": name})
        assert refused.value.errors()[0]["loc"] == ("name",)
        assert model.model_validate(rest | {"name": "Amy Ødegård-Smith"})


def test_every_name_a_request_shows_to_others_is_a_display_name():
    """The providers' application name and staff names, the recipients' names."""
    from services.brokerage.api import Person
    from services.notifications.api import RecipientIn
    from services.providers.api import ApplicationRequest, ConcernRequest, CredentialRequest, StaffUserRequest
    from services.runtime.fields import visible_name

    for model, field_name in (
        (ApplicationRequest, "name"),
        (StaffUserRequest, "name"),
        (RecipientIn, "name"),
        (Person, "full_name"),
        (CredentialRequest, "label"),
        (ConcernRequest, "adult_at_risk"),
    ):
        field = model.model_fields[field_name]
        metadata = [
            *field.metadata,
            *(m for arm in typing.get_args(field.annotation) for m in getattr(arm, "__metadata__", ())),
        ]
        assert visible_name in [getattr(m, "func", None) for m in metadata], model


# The services whose APIs take bodies (the reporting service's operations are all reads).
BODY_APIS = ("brokerage", "providers", "notifications")


def _body_operations(app: Any) -> list[tuple[str, str]]:
    """(method, a concrete path) of every operation with a body in an app's OpenAPI document."""
    found = []
    for template, operations in app.openapi()["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x-1", template)
        found += [(method.upper(), path) for method in operations if method in ("post", "put", "patch", "delete")]
    return found


@pytest.mark.parametrize("name", BODY_APIS)
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{not json"),
        ("application/json", b'{"x": "\\u0000"}'),
        ("text/plain", b"hello"),
        ("application/json", b"x" * 3_000_000),
    ],
    ids=["malformed", "unstorable", "wrong-type", "too-large"],
)
async def test_a_body_without_a_token_is_refused_for_the_token_first(app_of, name, content_type, body):
    """Found by an attack: without a token, a bad body had been judged first (422, 415, 413), telling a
    stranger the body's rules. Every operation with a body answers 401 with the bearer challenge
    before its body is read."""
    app = app_of(name)
    operations = _body_operations(app)
    assert operations, name
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}") as anonymous:
        for method, path in operations:
            response = await anonymous.request(method, path, content=body, headers={"content-type": content_type})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["content-type"] == problems.MEDIA_TYPE
            # No token at all: the challenge names no error (RFC 6750 section 3.1).
            assert response.headers["www-authenticate"] == "Bearer", (method, path)


async def test_a_body_with_a_token_is_still_judged_at_the_edge(app_of):
    """The token-first rule does not skip the body's checks for a caller with a token."""
    async with client(app_of("brokerage"), "brokerage") as broker:
        response = await broker.post("/packages", content=b"hello", headers={"content-type": "text/plain"})
    assert response.status_code == 415, response.text


@pytest.mark.parametrize("name", sorted(TEXT_FIELDS))
async def test_the_bearer_challenge_names_an_error_only_for_a_token_that_fails(app_of, name):
    """RFC 6750 section 3.1: a request with no token at all gets the challenge with no error code; a
    token that does not validate gets ``invalid_token`` (found by a new user: both had said it)."""
    path = TEXT_FIELDS[name][0]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_of(name)), base_url=f"http://{name}") as api:
        missing = await api.get(path)
        bad = await api.get(path, headers={"Authorization": "Bearer not-a-jwt"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer", missing.text
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == 'Bearer error="invalid_token"', bad.text


# Credentials that fail, and the challenge each gets: a token that fails names invalid_token; an
# Authorization header that carries no bearer token is answered as no token (RFC 6750 section 3.1).
FAILING_CREDENTIALS = {
    "garbage": ("Bearer not-a-jwt", 'Bearer error="invalid_token"'),
    "other-audience": (None, 'Bearer error="invalid_token"'),  # a valid token, for another service
    "basic": ("Basic ZGVtbzpkZW1v", "Bearer"),
    "empty-bearer": ("Bearer ", "Bearer"),
}


@pytest.mark.parametrize("name", BODY_APIS)
@pytest.mark.parametrize("credential", sorted(FAILING_CREDENTIALS))
async def test_a_body_with_a_token_that_fails_is_refused_before_the_body_is_judged(app_of, name, credential):
    """Found by an attack (decision 0168): with a token that fails, a malformed body had been judged
    first (FastAPI reads the body before its dependencies), a 422. The edge now verifies the token,
    with the verifier the authorization dependency uses, before it reads the body: every operation
    with a body answers 401 whatever the body holds."""
    header, challenge = FAILING_CREDENTIALS[credential]
    if header is None:
        header = f"Bearer {local_issuer.token('reporting')}"
    app = app_of(name)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}") as api:
        for method, path in _body_operations(app):
            for content_type, body in (("application/json", b"{not json"), ("text/plain", b"hello")):
                response = await api.request(
                    method, path, content=body, headers={"content-type": content_type, "Authorization": header}
                )
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["www-authenticate"] == challenge, (method, path)


async def test_a_token_is_verified_once_a_request(app_of, monkeypatch):
    """The edge and the authorization dependency share one verifier: the dependency finds the token
    the edge verified in its cache, so a request pays for one signature check, not two."""
    from services.runtime import auth

    checks = []
    original = auth.verified_claims

    async def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        checks.append(1)
        return await original(*args, **kwargs)

    monkeypatch.setattr(auth, "verified_claims", counted)
    # Never seen before (not yet cached), and of a role the table does not allow: the dependency
    # runs - it reads the principal again - and refuses.
    token = local_issuer.token("notifications", username="a-fresh-caller", roles=("no-such-role",))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_of("notifications")),
        base_url="http://notifications",
        headers={"Authorization": f"Bearer {token}"},
    ) as api:
        response = await api.put("/recipients/broker/amy", json={})
    assert response.status_code == 403, response.text
    assert len(checks) == 1


async def test_a_providers_own_credential_passes_the_edge_to_its_route(app_of):
    """An organisation's hcp_ credential is checked by the providers service against its store, on
    the route, not at the edge (which has no database): the edge lets it through to the body's checks."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_of("providers")),
        base_url="http://providers",
        headers={"Authorization": "Bearer hcp_x_y"},
    ) as api:
        response = await api.post("/me/concerns", content=b"hello", headers={"content-type": "text/plain"})
    assert response.status_code == 415, response.text


def _query_operations(app: Any) -> list[tuple[str, str, str, bool]]:
    """(method, a concrete path, a query parameter, whether it takes many values) of every
    operation with query parameters in an app's OpenAPI document."""
    found = []
    for template, operations in app.openapi()["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x-1", template)
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    schema = parameter.get("schema", {})
                    arms = schema.get("anyOf", [schema])
                    many = any(arm.get("type") == "array" for arm in arms)
                    found.append((method.upper(), path, parameter["name"], many))
    return found


@pytest.mark.parametrize("name", SERVICES)
async def test_a_query_parameter_given_twice_is_refused_naming_it(app_of, name):
    """Found by an attack on the reporting service: ``?zone=a&zone=b`` had kept the last value
    silently. On every API, every query parameter that takes one value, given twice, is a 422
    naming it - before the parameter's own checks, after the token's."""
    app = app_of(name)
    operations = _query_operations(app)
    if name != "console":
        assert operations, name
    roles = (*permissions.STAFF_ROLES, permissions.PROVIDER_STAFF)
    async with client(app, name, roles=roles) as caller:
        for method, path, parameter, many in operations:
            response = await caller.request(method, f"{path}?{parameter}=x&{parameter}=y")
            if many:
                assert response.status_code != 422 or parameter not in response.text, (method, path, parameter)
                continue
            body = assert_problem(response, 422, "invalid-request")
            assert [f["field"] for f in body["fields"]] == [parameter], (method, path)
            assert f"query parameter {parameter} is given 2 times" in body["detail"]


async def test_a_query_parameter_given_twice_needs_a_token_first(app_of):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_of("reporting")), base_url="http://r") as api:
        response = await api.get("/kpis?period=7d&period=30d")
    assert response.status_code == 401, response.text
