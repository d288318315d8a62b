"""Field types of the platform's contracts: the days a date typed into it may be
(:mod:`schemas.calendar`), for every request model - the services' APIs and the adapter contract.

``0001-01-01`` or ``9999-12-31`` is a 422 naming the field. The JSON Schema of :data:`Day` and
:data:`Moment` says ``formatMinimum`` and ``formatMaximum``; a test fails on a date input of any
published API without them (tests/unit/test_request_bounds.py).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

from schemas.calendar import EARLIEST_DAY, LATEST_DAY, check_within_the_calendar


def _day(day: dt.date) -> dt.date:
    check_within_the_calendar(day)
    return day


def _moment(at: dt.datetime) -> dt.datetime:
    check_within_the_calendar(at.date())
    return at


# A date typed into the platform: ``start_date: Day``, ``on: Day | None = None``.
Day = Annotated[
    dt.date,
    AfterValidator(_day),
    Field(json_schema_extra={"formatMinimum": str(EARLIEST_DAY), "formatMaximum": str(LATEST_DAY)}),
]
# A date and time typed into the platform: ``since: Moment | None = None``.
Moment = Annotated[
    dt.datetime,
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
    return value


# The check above, as the last metadata of a request's decimal field, after its constraints:
# ``Annotated[Decimal, Field(ge=0, le=100), DIGITS_0_TO_9]`` (before them, pydantic publishes the
# constraints as non-standard JSON Schema keys). tests/unit/test_request_types.py fails on a
# decimal field of any request body without it.
DIGITS_0_TO_9 = BeforeValidator(_decimal_text)
