"""A count or a yes/no in a request body is taken only as a JSON number or a JSON boolean: pydantic's
lax mode would take ``true`` as 1 (``"nhs_funded_weeks": true`` was a week of NHS funding) and
``"1"`` as 1, so every integer and boolean field of every request body model is strict
(``StrictInt``, ``StrictBool``). Whole models cannot be strict: FastAPI validates the parsed JSON
in Python mode, where a strict date or decimal would refuse the strings the API takes.

The models are read from every service's routes, so a new field cannot forget it. Query and path
parameters are left lax: they arrive as text."""

from __future__ import annotations

import datetime as dt
import importlib
import re
import types
import typing
from collections.abc import Callable, Iterator
from decimal import Decimal
from enum import Enum

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, Strict

from schemas.fields import DIGITS_0_TO_9
from services.runtime.fields import WHOLE_0_TO_9

# A scalar field met by the walk: its type, its metadata (constraints, validators), its path.
Leaf = tuple[object, list[object], str]


def _leaves(annotation: object, metadata: list[object], where: str, seen: set[type]) -> Iterator[Leaf]:
    """Every scalar field under ``annotation``: (its type, its metadata, its path), through
    Annotated, unions, containers and nested models (each model once)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extra = typing.get_args(annotation)
        yield from _leaves(inner, [*metadata, *extra], where, seen)
    elif origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(annotation):
            if arm is not type(None):
                yield from _leaves(arm, metadata, where, seen)
    elif origin in (list, set, frozenset, tuple, dict):
        for arm in typing.get_args(annotation):
            yield from _leaves(arm, [], f"{where}[]", seen)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in seen:
            seen.add(annotation)
            for name, field in annotation.model_fields.items():
                yield from _leaves(field.annotation, list(field.metadata), f"{where}.{name}", seen)
    elif not (isinstance(annotation, type) and issubclass(annotation, Enum)):
        yield annotation, metadata, where


def _loose(annotation: object, metadata: list[object], where: str, seen: set[type]) -> Iterator[str]:
    """The integer and boolean fields under ``annotation`` that are not strict, as paths."""
    for kind, meta, path in _leaves(annotation, metadata, where, seen):
        if kind in (int, bool) and not any(isinstance(m, Strict) and m.strict for m in meta):
            yield f"{path}: {kind.__name__}"


def _textual_decimals(annotation: object, metadata: list[object], where: str, seen: set[type]) -> Iterator[str]:
    """The decimal fields under ``annotation`` without the 0-9 check (schemas.fields.DIGITS_0_TO_9)."""
    for kind, meta, path in _leaves(annotation, metadata, where, seen):
        if kind is Decimal and DIGITS_0_TO_9 not in meta:
            yield f"{path}: Decimal"


def _api_routes(routes: list[object]) -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute, with its path, through included routers (FastAPI keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route.path_format, route
        included = getattr(route, "original_router", None)  # an included APIRouter
        if included is not None:
            yield from _api_routes(included.routes)


def body_fields(check: Callable[[object, list[object], str, set[type]], Iterator[str]]) -> tuple[list[str], int]:
    """(what ``check`` finds in the body model of every route of every service, how many bodies were read)."""
    from services.runtime.settings import SERVICES, load

    found: list[str] = []
    bodies = 0
    for service in SERVICES:
        _, app = importlib.import_module(f"services.{service}.app").build(load(service))
        for path, route in _api_routes(list(app.routes)):
            if route.body_field is not None:
                bodies += 1
                where = f"{service} {'/'.join(sorted(route.methods or ()))} {path} body"
                found += check(route.body_field.field_info.annotation, [], where, set())
    return sorted(set(found)), bodies


def test_every_count_and_yes_no_of_every_request_body_is_strict():
    found, bodies = body_fields(_loose)
    assert bodies >= 40, bodies  # the walk reached the routes of every service's routers
    assert not found, f"{len(found)} lax fields (use pydantic's StrictInt / StrictBool):\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("annotation", "strict"),
    [(int, False), (typing.Annotated[int, Strict()], True), (typing.Annotated[bool, Strict()] | None, True)],
)
def test_the_walk_tells_a_strict_field_from_a_lax_one(annotation, strict):
    assert (not list(_loose(annotation, [], "x", set()))) is strict


def test_every_decimal_of_every_request_body_is_read_in_0_to_9_alone():
    """Decision 0154: pydantic reads a decimal sent as text with Python's Decimal(), which takes any
    script's digits ("١٩.٩٥" was a bid of 19.95), underscores ("1_0" was 10) and exponents."""
    found, _ = body_fields(_textual_decimals)
    assert not found, "decimal fields without schemas.fields.DIGITS_0_TO_9:\n" + "\n".join(found)
    assert list(_textual_decimals(typing.Annotated[Decimal, Field(ge=0)], [], "x", set())) == ["x: Decimal"]


@pytest.mark.parametrize("text", ["١٩.٩٥", "１９.９５", "1_0", "1e2", "NaN", "Infinity", "19.", ".5", "+1", " "])
def test_a_decimal_in_other_digits_or_notations_is_refused_and_plain_ones_pass(text):
    from pydantic import TypeAdapter, ValidationError

    from schemas.events import Money

    adapters: list[TypeAdapter[Decimal]] = [TypeAdapter(typing.Annotated[Decimal, DIGITS_0_TO_9]), TypeAdapter(Money)]
    for adapter in adapters:
        with pytest.raises(ValidationError, match="0-9"):
            adapter.validate_python(text)
        assert str(adapter.validate_python(" 19.95 ")) == "19.95"
        assert str(adapter.validate_python(19.95)) == "19.95"
    assert str(TypeAdapter(typing.Annotated[Decimal, DIGITS_0_TO_9]).validate_python("-0.00")) == "0.00"
    assert str(TypeAdapter(typing.Annotated[Decimal, DIGITS_0_TO_9]).validate_python("-0.5")) == "-0.5"


def _shown_text(annotation: object, metadata: list[object], where: str, seen: set[type]) -> Iterator[str]:
    """The text fields under ``annotation`` that take a right-to-left override (U+202E, the
    "Trojan Source" trick that shows "cba" for "abc"): every one should be a code or an id with a
    pattern or a vocabulary, a :data:`DisplayName` or a :data:`FreeText` (decisions 0155, 0156)."""
    from pydantic import TypeAdapter, ValidationError

    for kind, meta, path in _leaves(annotation, metadata, where, seen):
        if kind is str:
            try:
                # No space in it: a pattern refusing spaces would hide a field that takes U+202E.
                TypeAdapter(typing.Annotated[str, *meta]).validate_python("https://care\u202enoted")
            except ValidationError:
                continue
            yield path


def test_every_text_field_of_every_request_body_refuses_characters_that_hide_or_reorder_text():
    found, bodies = body_fields(_shown_text)
    assert bodies >= 40, bodies
    assert not found, "text fields that take U+202E (use DisplayName, FreeText or a pattern):\n" + "\n".join(found)
    assert list(_shown_text(typing.Annotated[str, Field(max_length=100)], [], "x", set())) == ["x"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("12 Mill Lane\u202e", "U+202E"),  # a bidirectional override
        ("Flat\u200b2", "U+200B"),  # a zero-width space
        ("Ring twice\x1b[2J", "U+001B"),  # a terminal escape
        ("\u2028", "U+2028"),  # a line separator
        ("\u3164\u3164", "U+3164"),  # a filler that shows nothing
        ("\n\t", "no character that shows"),
    ],
)
def test_free_text_refuses_what_hides_or_reorders_it_and_keeps_line_breaks(text, problem):
    from pydantic import TypeAdapter, ValidationError

    from schemas.fields import FreeText

    adapter: TypeAdapter[str] = TypeAdapter(FreeText)
    with pytest.raises(ValidationError, match=re.escape(problem)):
        adapter.validate_python(text)
    address = "12 Mill Lane\r\nLoughborough\tLE11 3AB – Flat 2 (ring twice) 😀"
    assert adapter.validate_python(address) == address
    assert adapter.validate_python("") == ""


@pytest.mark.parametrize(
    ("url", "taken"),
    [
        ("https://receiver.example/hook?x=1#f", True),
        ("http://127.0.0.1:8080/offers", True),
        ("https://[::1]:8443/x", True),
        ("https://receiver.example", True),
        ("https://receiver.example/a\u202eb", False),  # found by an attack: stored and echoed
        ("https://receiver.example/\x07\x1b[2J", False),  # a bell and a terminal escape
        ("https://receiver.example/a b", False),
        ("https://recei\u200bver.example/", False),
        ("https://receiver.example/caf\u00e9", False),  # a URI is ASCII: send it percent-encoded
        ("https:///path-without-host", False),
        ("ftp://receiver.example/", False),
    ],
)
def test_a_webhooks_address_is_printable_ascii_with_a_host(url, taken):
    """Decision 0156: every webhook address a request sends (a provider's adapter and its /me
    webhook, an application's adapter, a recipient's) takes this one pattern."""
    from pydantic import TypeAdapter, ValidationError

    from services.runtime.fields import WEBHOOK_URL_PATTERN

    adapter: TypeAdapter[str] = TypeAdapter(typing.Annotated[str, Field(pattern=WEBHOOK_URL_PATTERN)])
    try:
        adapter.validate_python(url)
    except ValidationError:
        assert not taken
    else:
        assert taken


def _loose_dates(annotation: object, metadata: list[object], where: str, seen: set[type]) -> Iterator[str]:
    """The date and date-time fields under ``annotation`` that are not :data:`Day` or :data:`Moment`."""
    from schemas.fields import Day, Moment

    typed = {id(m) for kind in (Day, Moment) for m in typing.get_args(kind)[1:]}
    for kind, meta, path in _leaves(annotation, metadata, where, seen):
        if kind in (dt.date, dt.datetime) and not any(id(m) in typed for m in meta):
            yield f"{path}: {kind.__name__}"


def test_every_date_of_every_request_body_is_a_day_or_a_moment():
    """Decision 0156: pydantic reads a number as seconds since 1970 (``"received_on": 1764720000``
    was a complaint of 3 December 2025) and a date and time at midnight as a date; Day and Moment
    take ISO 8601 text alone, inside the platform's calendar."""
    found, _ = body_fields(_loose_dates)
    assert not found, "dates without schemas.fields.Day or Moment:\n" + "\n".join(found)
    assert list(_loose_dates(dt.date, [], "x", set())) == ["x: date"]


@pytest.mark.parametrize(
    "sent", [1764720000, "1764720000", "2026-12-03T00:00:00", True, "２０２６-１２-０３", "3/12/2026"]
)
def test_a_day_is_iso_text_alone(sent):
    from pydantic import TypeAdapter, ValidationError

    from schemas.fields import Day

    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        TypeAdapter(Day).validate_python(sent)
    assert TypeAdapter(Day).validate_python(" 2026-12-03 ") == dt.date(2026, 12, 3)


def _parameters() -> Iterator[tuple[str, object, list[object]]]:
    """Every query and path parameter of every route of every service: (where, type, metadata)."""
    from services.runtime.settings import SERVICES, load

    for service in SERVICES:
        _, app = importlib.import_module(f"services.{service}.app").build(load(service))
        for path, route in _api_routes(list(app.routes)):
            dependants = [route.dependant]
            while dependants:
                dependant = dependants.pop()
                dependants += dependant.dependencies
                for field in [*dependant.query_params, *dependant.path_params]:
                    info = field.field_info
                    for kind, meta, where in _leaves(info.annotation, list(info.metadata), field.name, set()):
                        yield f"{service} {path} {where}", kind, meta


def test_every_number_in_a_query_or_a_path_is_read_in_0_to_9_alone():
    """Found by an attack: pydantic reads "1_0" in a query string as 10 (``?limit=1_0``,
    ``?waiting_longer_than_hours=0_1``); decision 0154's rule holds for query strings and paths too."""

    loose, seen = [], 0
    for where, kind, meta in _parameters():
        if kind is int:
            seen += 1
            if WHOLE_0_TO_9 not in meta:
                loose.append(f"{where}: int")
        elif kind in (float, Decimal):
            seen += 1
            if DIGITS_0_TO_9 not in meta:
                loose.append(f"{where}: {kind.__name__}")
    assert seen >= 15, seen
    assert not loose, "numbers without WHOLE_0_TO_9 / DIGITS_0_TO_9:\n" + "\n".join(sorted(set(loose)))


@pytest.mark.parametrize("sent", ["1_0", "+10", "١٠", "10.0", "", "9" * 19])
def test_a_whole_number_parameter_is_0_to_9_alone(sent):
    from pydantic import TypeAdapter, ValidationError

    adapter: TypeAdapter[int] = TypeAdapter(typing.Annotated[int, WHOLE_0_TO_9])
    with pytest.raises(ValidationError, match="0-9"):
        adapter.validate_python(sent)
    assert adapter.validate_python(" 10 ") == 10


def test_a_text_too_long_is_said_in_characters_whatever_its_validators():
    """Found by an attack: an optional text field of ours (``FreeText | None = Field(max_length=1000)``)
    was refused with pydantic's "Value should have at most 1000 items after validation" - the limit
    is checked after the text's own validators, where pydantic no longer knows a string. The edge's
    messages (services/runtime/problems.py: validation_message) say characters."""
    from pydantic import ValidationError

    from services.brokerage.api import CancelRequest, Person
    from services.runtime.problems import validation_message

    cases = [
        (lambda: CancelRequest(reason="other", reason_text="x" * 1001), "reason_text", 1000),
        (
            lambda: Person(
                full_name="A", address="B", postcode="LE11 1AA", nhs_number="9990001112", care_notes="x" * 5001
            ),
            "care_notes",
            5000,
        ),
    ]
    for build, field, limit in cases:
        with pytest.raises(ValidationError) as refused:
            build()
        [error] = [e for e in refused.value.errors() if e["loc"] == (field,)]
        assert validation_message(error) == f"at most {limit} characters, not {limit + 1}", error
