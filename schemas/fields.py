"""Field types of the platform's contracts: the days a date typed into it may be
(:mod:`schemas.calendar`), for every request model - the services' APIs and the adapter contract.

``0001-01-01`` or ``9999-12-31`` is a 422 naming the field. The JSON Schema of :data:`Day` and
:data:`Moment` says ``formatMinimum`` and ``formatMaximum``; a test fails on a date input of any
published API without them (tests/unit/test_request_bounds.py).

:data:`DIGITS_0_TO_9` reads a decimal sent as text in 0-9 alone (decision 0154); :data:`DisplayName`
and :data:`FreeText` refuse text with characters that hide or reorder it (decisions 0155, 0156).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from schemas.calendar import EARLIEST_DAY, LATEST_DAY, check_within_the_calendar


def _day(day: dt.date) -> dt.date:
    check_within_the_calendar(day)
    return day


def _moment(at: dt.datetime) -> dt.datetime:
    check_within_the_calendar(at.date())
    return at


_DAY_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
# An ISO 8601 date and time as text: a number there would be read as seconds since 1970.
_MOMENT_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,9})?)?([Zz]|[+-][0-9]{2}:?[0-9]{2})?)?$",
    re.ASCII,
)


def _day_as_sent(value: object) -> object:
    """A date sent as text is an ISO 8601 calendar date, ``YYYY-MM-DD`` (decision 0156): pydantic
    would also read a number as seconds since 1970 (``1764720000`` was 3 December 2025) and a date
    and time at midnight as its day."""
    if isinstance(value, str):
        if not _DAY_TEXT.fullmatch(value.strip(" ")):  # spaces alone around it: no control, no other space
            raise ValueError("must be a date written YYYY-MM-DD, like 2026-12-03")
        return value.strip(" ")
    if isinstance(value, (int, float)):  # bool too
        raise ValueError("must be a date written YYYY-MM-DD, like 2026-12-03, not a number")
    return value


def _moment_as_sent(value: object) -> object:
    """A date and time is sent as ISO 8601 text, never as a number of seconds (decision 0156)."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and not _MOMENT_TEXT.match(value.strip(" "))):
        raise ValueError("must be a date and time written like 2026-12-03T14:30:00Z")
    return value.strip(" ") if isinstance(value, str) else value


# A date typed into the platform: ``start_date: Day``, ``on: Day | None = None``.
Day = Annotated[
    dt.date,
    BeforeValidator(_day_as_sent),
    AfterValidator(_day),
    Field(json_schema_extra={"formatMinimum": str(EARLIEST_DAY), "formatMaximum": str(LATEST_DAY)}),
]
# A date and time typed into the platform: ``since: Moment | None = None``.
Moment = Annotated[
    dt.datetime,
    BeforeValidator(_moment_as_sent),
    AfterValidator(_moment),
    Field(json_schema_extra={"formatMinimum": f"{EARLIEST_DAY}T00:00:00Z", "formatMaximum": f"{LATEST_DAY}T23:59:59Z"}),
]


_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)


def is_decimal_text(text: str) -> bool:
    """Whether ``text`` is a decimal written in 0-9 with at most a sign and a point ("10.5", "-3")."""
    return _DECIMAL_TEXT.fullmatch(text.strip()) is not None


def _decimal_text(value: object) -> object:
    """A decimal sent as text is written in 0-9 with at most a sign and a point (decision 0154):
    Python's ``Decimal()`` would also read other scripts' digits ("١٩.٩٥" was a bid of 19.95),
    full-width ones, underscores ("1_0" was 10) and exponents. A JSON number passes as it is."""
    if isinstance(value, str):
        if not is_decimal_text(value):
            raise ValueError("must be a number written in the digits 0-9, like 10.5")
        if value.strip().startswith("-") and not value.strip("-0. "):
            return value.strip()[1:]  # "-0" is 0: stored and shown without its sign
    elif isinstance(value, float) and value == 0:
        return 0.0  # the JSON number -0.0 too
    return value


# The check above, as the last metadata of a request's decimal field, after its constraints:
# ``Annotated[Decimal, Field(ge=0, le=100), DIGITS_0_TO_9]`` (before them, pydantic publishes the
# constraints as non-standard JSON Schema keys). tests/unit/test_request_types.py fails on a
# decimal field of any request body without it.
DIGITS_0_TO_9 = BeforeValidator(_decimal_text)


def escaped(text: str) -> str:
    """``text`` as a report or an error may store and show it: unchanged when it all prints, else
    with every character that does not print escaped (``\\x00``, ``\\u202e``)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


# Unicode categories that never show as themselves: controls (tabs, newlines), format characters
# (zero-width spaces and joiners, bidirectional overrides and isolates), line and paragraph
# separators, surrogates, private use and unassigned code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Letters and marks that show nothing (Unicode's default-ignorable fillers, the blank Braille cell).
_BLANKS = frozenset({0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164, 0xFFA0})


def _refuse_hidden(text: str, allowed: frozenset[str] = frozenset(), *, selectors: bool = False) -> str:
    """``text`` unchanged; ValueError if a character other than ``allowed`` hides or reorders the
    text (with ``selectors``, a variation selector too), or if ``text`` is not empty and nothing
    in it shows."""
    hidden = sorted(
        {
            f"U+{ord(c):04X}"
            for c in text
            if c not in allowed
            and (
                unicodedata.category(c) in _HIDDEN_CATEGORIES
                or ord(c) in _BLANKS
                or (selectors and (0xFE00 <= ord(c) <= 0xFE0F or 0xE0100 <= ord(c) <= 0xE01EF))
            )
        }
    )
    if hidden:
        raise ValueError(f"contains characters that do not show or reorder the text ({', '.join(hidden[:5])})")
    if text and not any(unicodedata.category(c)[0] in "LNPS" for c in text):
        raise ValueError("has no character that shows")
    return text


def visible_name(text: str) -> str:
    """A name or label shown to other people (a provider's, a staff user's, a recipient's, the
    person's): no character that hides or reorders text - controls, format characters (zero-width
    spaces and joiners, the bidirectional overrides and isolates of the "Trojan Source" trick),
    line separators, fillers that show nothing - and, unless empty, at least one letter, digit,
    punctuation or symbol. ValueError naming the problem (a 422 naming the field; decision 0155).

    Variation selectors too (U+FE00-FE0F, U+E0100-E01EF), found by an attack: they show nothing,
    so two names that look the same could differ. Typed words keep them (an emoji's U+FE0F)."""
    return _refuse_hidden(text, selectors=True)


# Line breaks and tabs a person types in a note or an address; every other control is refused.
_LAYOUT = frozenset("\n\r\t")


def plain_text(text: str) -> str:
    """Words a person typed (an address, a note, a reason's words, a complaint's summary): what
    :func:`visible_name` refuses, except line breaks and tabs, which lay such text out. ValueError
    naming the problem (a 422 naming the field; decision 0156)."""
    return _refuse_hidden(text, _LAYOUT)


# A name shown to others: ``name: DisplayName = Field(min_length=1, max_length=200)``.
DisplayName = Annotated[str, AfterValidator(visible_name)]
# Words typed by a person: ``notes: FreeText | None = Field(default=None, max_length=5000)``.
FreeText = Annotated[str, AfterValidator(plain_text)]
